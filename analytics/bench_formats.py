#!/usr/bin/env python3
"""Side by side on the same events: Spark KPI job time and bytes per output format.

Variants (name = format, how it is read):
  text            one event JSON per line                      (--format text)
  jsonl           flumen's record envelope per line            (--format jsonl)
  jsonl+gzip      the same in a gzip stream (.jsonl.gz)        (--format jsonl)
  parquet         the Parquet envelope, snappy; JSON parsed from `value` (--parquet-read envelope)
  parquet-typed   envelope + value_schema columns, snappy; typed columns only (--parquet-read typed)
  parquet-auto    the same files read the default way                     (--parquet-read auto)
  parquet-zstd    envelope + typed columns, zstd; typed columns only

By default the files are written locally with the test fixtures (pyarrow, gzip), which follow
flumen's output contract; `--input NAME=DIR:FORMAT[:PARQUET_READ]` (repeatable) measures
folders flumen wrote instead, e.g. on HDFS:
  --input jsonl=hdfs://127.0.0.1:9000/bench/jsonl:jsonl --input parquet=hdfs://.../pq:parquet:typed

The job measured is the KPI job's batch core: read -> events -> kpis() -> all columns computed
(Spark's `noop` sink, so no output I/O is timed). One warm-up pass, then --rounds rounds with the
variant order rotated per round; the table shows the median and min of the rounds. Every variant
must yield the same number of events, or the bench fails instead of printing ratios.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "tests")]

LOCAL = [  # name, fixture format, read format, parquet_read, parquet codec
    ("text", "text", "text", "auto", None),
    ("jsonl", "jsonl", "jsonl", "auto", None),
    ("jsonl+gzip", "jsonl.gz", "jsonl", "auto", None),
    ("parquet", "parquet", "parquet", "envelope", "snappy"),
    ("parquet-typed", "parquet-typed", "parquet", "typed", "snappy"),
    ("parquet-auto", "parquet-typed", "parquet", "auto", "snappy"),
    ("parquet-zstd", "parquet-typed", "parquet", "typed", "zstd"),
]


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def write_local(work: str, args) -> list:
    from flumen_testutil import write_final_files
    from gen_events import EventModel

    events = list(EventModel(seed=args.seed, cells=args.cells, start_ms=1732442400000,
                             sim_eps=args.sim_eps).events(args.events))
    out, written = [], {}
    for name, fixture, fmt, how, codec in LOCAL:
        key = (fixture, codec)
        if key not in written:
            d = os.path.join(work, f"{fixture}-{codec or 'none'}")
            write_final_files(d, events, fmt=fixture, partitions=3, per_file=args.per_file,
                              compression=codec or "snappy")
            written[key] = d
        out.append((name, written[key], fmt, how))
    return out


def parse_input(spec: str):
    name, rest = spec.split("=", 1)
    parts = rest.rsplit(":", 2)
    if len(parts) == 3 and parts[1] in ("text", "jsonl", "parquet"):
        return name, parts[0], parts[1], parts[2]
    path, fmt = rest.rsplit(":", 1)
    return name, path, fmt, "auto"


def measure(spark, variants, rounds: int):
    import buckets
    import kpi_job
    from pyspark.sql import functions as F

    def job(path, fmt, how):
        return kpi_job.kpis(kpi_job.read_events_batch(spark, path, fmt, how))

    rows = {}
    for name, path, fmt, how in variants:
        found = buckets.find_buckets(spark, path, None)
        n = job(path, fmt, how).agg(F.sum("events")).first()[0]  # also the warm-up pass
        rows[name] = {"files": sum(b.final_files for b in found), "bytes": sum(b.final_bytes for b in found),
                      "events": n, "times": []}
    counts = {r["events"] for r in rows.values()}
    if len(counts) != 1:
        raise SystemExit(f"bench: variants disagree on the number of events: "
                         f"{ {k: r['events'] for k, r in rows.items()} }")
    for i in range(rounds):
        order = variants[i % len(variants):] + variants[:i % len(variants)]
        for name, path, fmt, how in order:
            t0 = time.perf_counter()
            job(path, fmt, how).write.format("noop").mode("overwrite").save()
            rows[name]["times"].append(time.perf_counter() - t0)
    return rows


def report(rows, base: str) -> str:
    b = rows.get(base) or next(iter(rows.values()))
    hdr = ["variant", "files", "bytes", "B/event", "bytes vs " + base, "median s", "min s",
           "time vs " + base, "events/s"]
    out = []
    for name, r in rows.items():
        med, mn = statistics.median(r["times"]), min(r["times"])
        out.append([name, r["files"], r["bytes"], f"{r['bytes'] / r['events']:.1f}",
                    f"{r['bytes'] / b['bytes']:.2f}", f"{med:.2f}", f"{mn:.2f}",
                    f"{med / statistics.median(b['times']):.2f}", f"{r['events'] / med:,.0f}"])
    from count_check import table
    return table(hdr, out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--cells", type=int, default=20)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--sim-eps", type=float, default=200.0, help="event-time speed of the generator model")
    p.add_argument("--per-file", type=int, default=20_000, help="records per local file (flumen's roll size)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--input", action="append", default=[], metavar="NAME=DIR:FORMAT[:PARQUET_READ]",
                   help="measure these folders instead of writing local files")
    p.add_argument("--work", default=None, help="where local files go (default: a temp dir, removed)")
    p.add_argument("--hdfs-url", default=os.environ.get("HDFS_URL"))
    p.add_argument("--driver-memory", default="640m")
    a = p.parse_args(argv)

    import kpi_job

    print(f"bench-formats: load average {loadavg()} at start", flush=True)
    # A temp dir only for local files; --input measures folders in place.
    work = a.work or (None if a.input else tempfile.mkdtemp(prefix="flumen-bench-formats."))
    try:
        if a.input:
            variants = [parse_input(s) for s in a.input]
        else:
            t0 = time.perf_counter()
            variants = write_local(work, a)
            print(f"bench-formats: wrote {a.events} events x {len({v[1] for v in variants})} layouts to {work} "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
        conf = {} if a.hdfs_url else {"spark.hadoop.fs.defaultFS": "file:///"}
        spark = kpi_job.build_spark(app="flumen-bench-formats", driver_memory=a.driver_memory,
                                    hdfs_url=a.hdfs_url, log_level="ERROR", extra_conf=conf)
        try:
            rows = measure(spark, variants, a.rounds)
        finally:
            spark.stop()
        print(f"\nSpark KPI job (local[2], batch, noop sink) over {next(iter(rows.values()))['events']} events, "
              f"{a.rounds} rounds:")
        print(report(rows, "jsonl"))
        print(f"\nbench-formats: load average {loadavg()} at end", flush=True)
    finally:
        if work and not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
