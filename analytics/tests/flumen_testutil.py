"""Helpers shared by the analytics tests: write flumen-style final files locally."""
import json
import os
import zlib
from collections import Counter, defaultdict


def final_name(topic, partition, first, last, ext, prefix="test-events"):
    return f"{prefix}+{topic}+{partition}+{first:020d}+{last:020d}{ext}"


def jsonl_line(topic, partition, offset, event, ts=1732470000000):
    value = json.dumps(event, separators=(",", ":"))
    rec = {"topic": topic, "partition": partition, "offset": offset, "timestamp": ts,
           "key": event.get("cell_id"), "headers": [{"key": "h", "value": "v"}], "value": value}
    return json.dumps(rec, separators=(",", ":"))


def text_line(event):
    return json.dumps(event, separators=(",", ":"))


def partition_of(cell_id, partitions):
    """Stand-in for Kafka's key partitioner: stable per cell."""
    return zlib.crc32(cell_id.encode()) % partitions


def write_final_files(directory, events, fmt="jsonl", topic="flume.txn", partitions=3,
                      per_file=50, prefix="test-events"):
    """Write events as flumen would: per partition, consecutive offsets, chunks of per_file.

    Returns (list of written paths, Counter per partition as str, Counter per cell)."""
    os.makedirs(directory, exist_ok=True)
    by_part = defaultdict(list)
    for ev in events:
        by_part[partition_of(ev["cell_id"], partitions)].append(ev)
    paths, per_part, per_cell = [], Counter(), Counter()
    ext = ".jsonl" if fmt == "jsonl" else ".txt"
    for p in sorted(by_part):
        evs = by_part[p]
        for start in range(0, len(evs), per_file):
            chunk = evs[start:start + per_file]
            first, last = start, start + len(chunk) - 1
            lines = [jsonl_line(topic, p, start + i, e) if fmt == "jsonl" else text_line(e)
                     for i, e in enumerate(chunk)]
            path = os.path.join(directory, final_name(topic, p, first, last, ext, prefix))
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")
            paths.append(path)
            per_part[str(p)] += len(chunk)
            for e in chunk:
                per_cell[e["cell_id"]] += 1
    return paths, per_part, per_cell


def make_report(events, per_part, topic="flume.txn", run_id=None):
    per_cell = Counter(e["cell_id"] for e in events)
    return {"topic": topic, "run_id": run_id or (events[0]["run_id"] if events else None),
            "total": len(events), "delivered": len(events), "failed": 0,
            "per_partition": dict(per_part), "per_cell": dict(sorted(per_cell.items()))}
