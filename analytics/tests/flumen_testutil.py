"""Helpers shared by the analytics tests: write flumen-style final files locally.

Formats: text, jsonl, jsonl.gz (jsonl in a gzip stream, as `compression = "gzip"` writes it),
parquet (the envelope of i13-contract.md) and parquet-typed (the envelope plus one column per
gen_events field, as `[hdfs.parquet] value_schema` writes it). Parquet files are written with
pyarrow, column for column as the contract states, so the readers are tested against the
contract before flumen's own writer exists; the lead reruns them on flumen-written files.
"""
import gzip
import json
import os
import zlib
from collections import Counter, defaultdict

FORMATS = ("text", "jsonl", "jsonl.gz", "parquet", "parquet-typed")
EXT = {"text": ".txt", "jsonl": ".jsonl", "jsonl.gz": ".jsonl.gz", "parquet": ".parquet",
       "parquet-typed": ".parquet"}
FIXED_TS = 1732470000000

# The gen_events.py event model as a value_schema: (field, arrow type name).
EVENT_FIELDS = [("seq", "int64"), ("run_id", "string"), ("event_time", "int64"),
                ("event_time_iso", "string"), ("cell_id", "string"), ("region", "string"),
                ("subscriber", "string"), ("event_type", "string"), ("bytes_up", "int64"),
                ("bytes_down", "int64"), ("setup_latency_ms", "float64")]


def final_name(topic, partition, first, last, ext, prefix="test-events"):
    return f"{prefix}+{topic}+{partition}+{first:020d}+{last:020d}{ext}"


def jsonl_line(topic, partition, offset, event, ts=FIXED_TS):
    value = json.dumps(event, separators=(",", ":"))
    rec = {"topic": topic, "partition": partition, "offset": offset, "timestamp": ts,
           "key": event.get("cell_id"), "headers": [{"key": "h", "value": "v"}], "value": value}
    return json.dumps(rec, separators=(",", ":"))


def text_line(event):
    return json.dumps(event, separators=(",", ":"))


def partition_of(cell_id, partitions):
    """Stand-in for Kafka's key partitioner: stable per cell."""
    return zlib.crc32(cell_id.encode()) % partitions


def parquet_schema(typed):
    """The contract's envelope, in its column order, plus the typed columns when `typed`."""
    import pyarrow as pa

    header = pa.struct([pa.field("key", pa.binary(), nullable=False), pa.field("value", pa.binary())])
    fields = [
        pa.field("topic", pa.string(), nullable=False),
        pa.field("partition", pa.int32(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms", tz="UTC")),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", pa.list_(pa.field("element", header, nullable=False)), nullable=False),
    ]
    if typed:
        fields += [pa.field(name, pa.type_for_alias(t)) for name, t in EVENT_FIELDS]
    return pa.schema(fields)


def parquet_rows(topic, partition, first, events, typed, values=None, ts=None):
    """Column lists for one file: consecutive offsets from `first`. `values` overrides the raw
    value bytes (e.g. to prove a reader takes typed columns without parsing `value`)."""
    cols = {
        "topic": [topic] * len(events),
        "partition": [partition] * len(events),
        "offset": [first + i for i in range(len(events))],
        "timestamp": [(ts(e) if ts else e.get("event_time", FIXED_TS)) for e in events],
        "key": [e["cell_id"].encode() if e.get("cell_id") else None for e in events],
        "value": values if values is not None else
        [json.dumps(e, separators=(",", ":")).encode() for e in events],
        "headers": [[{"key": b"h", "value": b"v"}] for _ in events],
    }
    if typed:
        for name, _ in EVENT_FIELDS:
            cols[name] = [e.get(name) for e in events]
    return cols


def write_parquet(path, cols, typed, compression="snappy"):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pydict(cols, schema=parquet_schema(typed))
    pq.write_table(table, path, compression=compression)


def write_one(path, fmt, topic, partition, first, events, compression="snappy"):
    if fmt.startswith("parquet"):
        typed = fmt == "parquet-typed"
        write_parquet(path, parquet_rows(topic, partition, first, events, typed), typed, compression)
        return
    if fmt == "text":
        lines = [text_line(e) for e in events]
    else:
        lines = [jsonl_line(topic, partition, first + i, e) for i, e in enumerate(events)]
    data = ("\n".join(lines) + "\n").encode()
    if fmt == "jsonl.gz":
        data = gzip.compress(data, mtime=0)
    with open(path, "wb") as f:
        f.write(data)


def write_final_files(directory, events, fmt="jsonl", topic="flume.txn", partitions=3,
                      per_file=50, prefix="test-events", bucket_of=None, compression="snappy"):
    """Write events as flumen would: per partition, consecutive offsets from 0, files of at
    most per_file records (`compression`: the Parquet column codec). bucket_of(event) -> folder below `directory` (e.g. Hive-style
    "dt=2024-11-24/hr=10"): a file never spans two buckets, as flumen rolls on a path change.

    Returns (list of written paths, Counter per partition as str, Counter per cell)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}")
    by_part = defaultdict(list)
    for ev in events:
        by_part[partition_of(ev["cell_id"], partitions)].append(ev)
    paths, per_part, per_cell = [], Counter(), Counter()
    for p in sorted(by_part):
        for first, bucket, chunk in _runs(by_part[p], per_file, bucket_of):
            folder = os.path.join(directory, bucket) if bucket else directory
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, final_name(topic, p, first, first + len(chunk) - 1, EXT[fmt], prefix))
            write_one(path, fmt, topic, p, first, chunk, compression)
            paths.append(path)
            per_part[str(p)] += len(chunk)
            for e in chunk:
                per_cell[e["cell_id"]] += 1
    return paths, per_part, per_cell


def _runs(events, per_file, bucket_of):
    """(first offset, bucket, events) runs: consecutive offsets, one bucket, <= per_file."""
    start = 0
    while start < len(events):
        bucket = bucket_of(events[start]) if bucket_of else ""
        end = start
        while end < len(events) and end - start < per_file and \
                (bucket_of(events[end]) if bucket_of else "") == bucket:
            end += 1
        yield start, bucket, events[start:end]
        start = end


def hive_hour(event):
    """dt=YYYY-MM-DD/hr=HH of the event time (UTC): flumen's recommended path layout."""
    from datetime import datetime, timezone

    t = datetime.fromtimestamp(event["event_time"] / 1000, tz=timezone.utc)
    return t.strftime("dt=%Y-%m-%d/hr=%H")


def make_report(events, per_part, topic="flume.txn", run_id=None):
    """A gen_events-style report. partition_offsets assumes write_final_files' offsets (0..n-1)."""
    per_cell = Counter(e["cell_id"] for e in events)
    return {"topic": topic, "run_id": run_id or (events[0]["run_id"] if events else None),
            "total": len(events), "delivered": len(events), "failed": 0,
            "per_partition": dict(per_part),
            "partition_offsets": {p: {"first": 0, "last": n - 1} for p, n in per_part.items()},
            "per_cell": dict(sorted(per_cell.items()))}
