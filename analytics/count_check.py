#!/usr/bin/env python3
"""Exactly-once check: compare the events in flumen's final files with a gen_events --report.

Reads every final file (batch, same name filter and parser as kpi_job) and checks:
  * total events and per-cell counts equal the generator report exactly;
  * per-partition counts (partition taken from the file name) equal the report's delivery
    counts, for files of the report's topic;
  * no event appears twice (key: run_id + seq) and, for jsonl and parquet (formats that carry
    each record's Kafka coordinates), no Kafka record (topic, partition, offset) appears twice;
  * file offset ranges of one topic-partition do not overlap; for jsonl and parquet the
    first/last record offsets of each file equal the offsets in its name; a text file never
    holds more lines than its offset range;
  * no gap: every offset the generator's delivery reports name (report `partition_offsets`)
    is in a final file: in a record's offset (jsonl, parquet) or in a file name's range (text);
  * every line (parquet: row) parses as an event.
Time-bucketed layouts (dt=.../hr=...) are read recursively; `_`-prefixed folders and markers
are skipped as Spark skips them.
Prints tables and exits 0 when all hold, 1 on any mismatch, 2 on usage/read errors.

  python count_check.py --input hdfs://127.0.0.1:PORT/user/flumen/flume_kafka --format jsonl \
      --report /tmp/gen-report.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections import defaultdict
from typing import Dict, List, Optional

FILE_RE = re.compile(r"^(?P<prefix>.*)\+(?P<topic>[^+]+)\+(?P<partition>\d+)\+(?P<first>\d{20})\+(?P<last>\d{20})(?P<ext>.*)$")


def parse_file_name(name: str) -> Optional[dict]:
    m = FILE_RE.match(name)
    if not m:
        return None
    d = m.groupdict()
    return {"prefix": d["prefix"], "topic": d["topic"], "partition": int(d["partition"]),
            "first": int(d["first"]), "last": int(d["last"]), "ext": d["ext"]}


def table(headers: List[str], rows: List[list]) -> str:
    cells = [[str(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths)))]
    out.append("  ".join("-" * w for w in widths))
    for r in cells:
        out.append("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(r, widths))))
    return "\n".join(out)


# Formats whose records carry their own (topic, partition, offset).
RECORD_FORMATS = ("jsonl", "parquet")


def collect_stats(spark, input_path: str, fmt: str, run_id: Optional[str], sample: int = 10,
                  parquet_read: str = "auto") -> dict:
    """Run the Spark side (one parse, six small jobs): returns plain-Python aggregates."""
    from pyspark.sql import functions as F

    import flumen_input

    rows = flumen_input.read_rows_batch(spark, input_path, fmt, parquet_read)
    rows = rows.select(*[c for c in rows.columns], F.col("_metadata.file_name").alias("file"))
    # Keep unparseable lines (null event) so that one cached frame answers every question.
    ev = flumen_input.events_from_rows(rows, fmt, parquet_read, keep_record=True, keep_unparsed=True)
    ok = F.col("event_time").isNotNull() & F.col("cell_id").isNotNull()
    in_run = (F.col("run_id") == F.lit(run_id)) if run_id is not None else F.lit(True)
    ev = ev.withColumn("ok", ok).withColumn("in_run", ok & F.coalesce(in_run, F.lit(False))).persist()
    try:
        agg = [F.count(F.lit(1)).alias("lines"),
               F.sum(F.col("ok").cast("long")).alias("events"),
               F.sum(F.col("in_run").cast("long")).alias("run_events")]
        if fmt in RECORD_FORMATS:
            agg += [F.min("rec_offset").alias("min_off"), F.max("rec_offset").alias("max_off"),
                    F.countDistinct("rec_topic", "rec_partition").alias("tps")]
        per_file = {r["file"]: r.asDict() for r in ev.groupBy("file").agg(*agg).collect()}
        counted = ev.where("in_run")
        per_cell = {r["cell_id"]: r["n"] for r in counted.groupBy("cell_id").agg(F.count(F.lit(1)).alias("n")).collect()}

        def dup_summary(df, keys, with_files):
            """(#keys seen more than once, #extra copies, first `sample` of them) in one job."""
            extra = [F.sort_array(F.collect_list("file")).alias("files")] if with_files else []
            groups = df.groupBy(*keys).agg(F.count(F.lit(1)).alias("n"), *extra).where("n > 1")
            shown = F.struct(*keys, "n", *(["files"] if with_files else []))
            r = groups.agg(F.count(F.lit(1)).alias("keys"), F.sum(F.col("n") - 1).alias("extra"),
                           F.slice(F.sort_array(F.collect_list(shown)), 1, sample).alias("sample")).first()
            return r["keys"] or 0, r["extra"] or 0, [x.asDict() for x in (r["sample"] or [])]

        dup_keys, dup_extra, dup_sample = dup_summary(counted, ["run_id", "seq"], True)
        rec_dups, rec_dup_sample = 0, []
        offset_runs = None
        if fmt in RECORD_FORMATS:
            rec_dups, _, rec_dup_sample = dup_summary(
                ev.where("ok"), ["rec_topic", "rec_partition", "rec_offset"], False)
            offset_runs = contiguous_runs(ev.where("ok"))
        seq_stats = None
        if run_id is not None:
            seq_stats = counted.agg(F.countDistinct("seq").alias("distinct"), F.min("seq").alias("min"),
                                    F.max("seq").alias("max")).first().asDict()
    finally:
        ev.unpersist()
    line_counts = {f: d["lines"] for f, d in per_file.items()}
    other_runs = sum((d["events"] or 0) - (d["run_events"] or 0) for d in per_file.values())
    return {"line_counts": line_counts, "per_file": per_file, "per_cell": per_cell,
            "dup_keys": dup_keys, "dup_extra": dup_extra, "dup_sample": dup_sample,
            "rec_dups": rec_dups, "rec_dup_sample": rec_dup_sample, "seq_stats": seq_stats,
            "offset_runs": offset_runs,
            "other_run_events": other_runs}


def contiguous_runs(ev) -> Dict[str, List[list]]:
    """{"topic-partition": [[first, last], ...]}: the offsets present, as maximal runs of
    consecutive offsets (gaps-and-islands: offset - dense_rank is constant along a run). Only
    the runs travel to the driver, so a gap-free partition costs one row."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    offs = ev.select("rec_topic", "rec_partition", "rec_offset").distinct()
    w = Window.partitionBy("rec_topic", "rec_partition").orderBy("rec_offset")
    runs = (offs.withColumn("island", F.col("rec_offset") - F.dense_rank().over(w))
            .groupBy("rec_topic", "rec_partition", "island")
            .agg(F.min("rec_offset").alias("a"), F.max("rec_offset").alias("b")))
    out: Dict[str, List[list]] = defaultdict(list)
    for r in runs.collect():
        out[f"{r['rec_topic']}-{r['rec_partition']}"].append([r["a"], r["b"]])
    return {k: sorted(v) for k, v in out.items()}


def missing_ranges(runs: List[list], first: int, last: int) -> List[list]:
    """The sub-ranges of [first, last] that no run covers."""
    missing, nxt = [], first
    for a, b in sorted(runs):
        if b < nxt:
            continue
        if a > last:
            break
        if a > nxt:
            missing.append([nxt, a - 1])
        nxt = max(nxt, b + 1)
    if nxt <= last:
        missing.append([nxt, last])
    return missing


def gap_problems(files, stats: dict, report: dict, fmt: str) -> List[str]:
    """Offsets the report says were delivered but no final file holds."""
    topic, problems = report.get("topic"), []
    if fmt in RECORD_FORMATS:
        runs = stats.get("offset_runs") or {}
    else:  # text: the offset range in each file's name
        runs = defaultdict(list)
        for _, meta, _, _ in files:
            if meta:
                runs[f"{meta['topic']}-{meta['partition']}"].append([meta["first"], meta["last"]])
    for p, rng in sorted((report.get("partition_offsets") or {}).items(), key=lambda kv: int(kv[0])):
        gone = missing_ranges(runs.get(f"{topic}-{p}", []), int(rng["first"]), int(rng["last"]))
        if gone:
            n = sum(b - a + 1 for a, b in gone)
            shown = ", ".join(f"{a}..{b}" for a, b in gone[:10])
            problems.append(f"gap: partition {p}: {n} delivered offsets in no final file ({shown})")
    return problems


def evaluate(stats: dict, report: dict, fmt: str, only_run: bool) -> dict:
    """Pure comparison (no Spark). Returns {'ok': bool, 'problems': [...], 'text': str}."""
    problems: List[str] = []
    out: List[str] = []
    topic = report.get("topic")
    files = []
    for name, n_lines in sorted(stats["line_counts"].items()):
        meta = parse_file_name(name)
        pf = stats["per_file"].get(name, {})
        files.append((name, meta, n_lines, pf))
        if meta is None:
            problems.append(f"file name does not parse as a final name: {name}")
            continue
        n_ev = pf.get("events", 0) or 0
        if n_ev != n_lines:
            unit = "rows" if fmt == "parquet" else "lines"
            problems.append(f"{name}: {n_lines - n_ev} of {n_lines} {unit} are not parseable events")
        span = meta["last"] - meta["first"] + 1
        if span <= 0:
            problems.append(f"{name}: last offset < first offset in name")
        if n_lines > span:
            problems.append(f"{name}: {n_lines} lines but offset range holds only {span}")
        if fmt in RECORD_FORMATS and n_ev:
            if (pf.get("min_off"), pf.get("max_off")) != (meta["first"], meta["last"]):
                problems.append(f"{name}: record offsets {pf.get('min_off')}..{pf.get('max_off')} "
                                f"differ from name {meta['first']}..{meta['last']}")
            if pf.get("tps", 1) != 1:
                problems.append(f"{name}: records from {pf.get('tps')} topic-partitions in one file")

    # Overlapping offset ranges within one topic-partition.
    by_tp: Dict[tuple, list] = defaultdict(list)
    for name, meta, _, _ in files:
        if meta:
            by_tp[(meta["topic"], meta["partition"])].append((meta["first"], meta["last"], name))
    gaps = 0
    for tp, ranges in sorted(by_tp.items()):
        ranges.sort()
        for (f1, l1, n1), (f2, l2, n2) in zip(ranges, ranges[1:]):
            if f2 <= l1:
                problems.append(f"overlapping offsets in {tp[0]}-{tp[1]}: {n1} and {n2}")
            elif f2 > l1 + 1:
                gaps += 1

    problems += gap_problems(files, stats, report, fmt)

    # Per partition (files of the report's topic), counting events of the checked run.
    got_part: Dict[str, int] = defaultdict(int)
    for name, meta, _, pf in files:
        if meta and meta["topic"] == topic:
            got_part[str(meta["partition"])] += pf.get("run_events", 0) or 0
    exp_part = {str(k): int(v) for k, v in (report.get("per_partition") or {}).items()}

    exp_cell = {k: int(v) for k, v in report.get("per_cell", {}).items()}
    got_cell = stats["per_cell"]
    rows = []
    for c in sorted(set(exp_cell) | set(got_cell)):
        e, g = exp_cell.get(c, 0), got_cell.get(c, 0)
        rows.append([c, e, g, g - e, "ok" if e == g else "MISMATCH"])
        if e != g:
            problems.append(f"cell {c}: expected {e}, found {g}")
    exp_total = int(report["total"])
    got_total = sum(got_cell.values())
    rows.append(["TOTAL", exp_total, got_total, got_total - exp_total, "ok" if exp_total == got_total else "MISMATCH"])
    if exp_total != got_total:
        problems.append(f"total: expected {exp_total}, found {got_total}")
    out.append("Per cell" + (f" (run {report.get('run_id')})" if only_run else "") + ":")
    out.append(table(["cell", "expected", "found", "diff", "status"], rows))

    if exp_part:
        prow = []
        for p in sorted(set(exp_part) | set(got_part), key=lambda x: int(x)):
            e, g = exp_part.get(p, 0), got_part.get(p, 0)
            prow.append([f"{topic}-{p}", e, g, g - e, "ok" if e == g else "MISMATCH"])
            if e != g:
                problems.append(f"partition {p}: expected {e}, found {g}")
        out.append("")
        out.append("Per partition (from file names):")
        out.append(table(["partition", "expected", "found", "diff", "status"], prow))

    if stats["dup_keys"]:
        problems.append(f"{stats['dup_keys']} duplicated seq ids ({stats['dup_extra']} extra copies)")
        out.append("")
        out.append("Duplicated events (run_id, seq -> copies, files):")
        for d in stats["dup_sample"]:
            out.append(f"  {d['run_id']} {d['seq']} x{d['n']}: {', '.join(d['files'])}")
    if stats["rec_dups"]:
        problems.append(f"{stats['rec_dups']} Kafka records (topic, partition, offset) appear more than once")
        for d in stats["rec_dup_sample"]:
            out.append(f"  record {d['rec_topic']}-{d['rec_partition']}@{d['rec_offset']} x{d['n']}")
    seq = stats.get("seq_stats")
    if seq and seq.get("distinct") is not None and seq["distinct"] != exp_total:
        problems.append(f"run {report.get('run_id')}: {seq['distinct']} distinct seq ids, expected {exp_total} "
                        f"(missing {max(0, exp_total - seq['distinct'])})")

    out.append("")
    out.append(f"files: {len(files)}, lines: {sum(stats['line_counts'].values())}, "
               f"offset gaps between files: {gaps} (informational; delivered offsets are checked against "
               "the report's partition_offsets)"
               + (f", events of other runs ignored: {stats['other_run_events']}" if only_run else ""))
    ok = not problems
    out.append("RESULT: " + ("OK exactly-once: counts match, no duplicates" if ok else "FAIL"))
    for p in problems:
        out.append(f"  - {p}")
    return {"ok": ok, "problems": problems, "text": "\n".join(out),
            "total_expected": exp_total, "total_found": got_total, "duplicates": stats["dup_keys"]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Compare flumen final files with a gen_events report",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="flumen final dir (hdfs://... or local path)")
    p.add_argument("--report", required=True, help="gen_events --report JSON")
    p.add_argument("--format", choices=("text", "jsonl", "parquet"), default="jsonl")
    p.add_argument("--parquet-read", choices=("auto", "typed", "envelope"), default="auto",
                   help="parquet: how events are taken (see kpi_job.py --help)")
    p.add_argument("--only-run", action="store_true",
                   help="count only events whose run_id equals the report's (others are listed, not failed)")
    p.add_argument("--json-out", default=None, help="also write the verdict as JSON here")
    p.add_argument("--hdfs-url", default=os.environ.get("HDFS_URL"))
    p.add_argument("--driver-memory", default="640m")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import kpi_job

    try:
        with open(a.report) as f:
            report = json.load(f)
        if "total" not in report or "per_cell" not in report:
            raise ValueError("report lacks 'total' or 'per_cell'")
    except (OSError, ValueError) as e:
        print(f"count_check: cannot read report {a.report}: {e}", file=sys.stderr)
        return 2
    spark = kpi_job.build_spark(app="flumen-count-check", driver_memory=a.driver_memory, hdfs_url=a.hdfs_url)
    try:
        stats = collect_stats(spark, a.input, a.format, report.get("run_id") if a.only_run else None,
                              parquet_read=a.parquet_read)
    except Exception as e:  # noqa: BLE001 - report any read failure as a usage error
        print(f"count_check: cannot read {a.input}: {e}", file=sys.stderr)
        spark.stop()
        return 2
    spark.stop()
    verdict = evaluate(stats, report, a.format, a.only_run)
    print(verdict["text"])
    if a.json_out:
        with open(a.json_out, "w") as f:
            json.dump({k: v for k, v in verdict.items() if k != "text"}, f, indent=2)
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
