#!/usr/bin/env python3
"""Per-cell telecom KPIs over the files flumen commits to HDFS (PySpark, streaming or batch).

Input: flumen's *final* directory (e.g. hdfs://127.0.0.1:PORT/user/flumen/flume_kafka), flat or
time-bucketed (Hive-style dt=YYYY-MM-DD/hr=HH recommended). Files there are named
<prefix>+<topic>+<partition>+<first_offset:020>+<last_offset:020><ext> and only ever appear
through an atomic rename; in-use files live under `_`-prefixed folders. The Spark file source
skips `_`/`.`-prefixed names, and this job additionally applies pathGlobFilter=FINAL_GLOB so
that only final-looking names are read at all.

Formats (--format; details in flumen_input.py):
  text     each line is the Kafka record value = one generator event JSON object
  jsonl    each line is {"topic","partition","offset","timestamp","key","headers","value"} where
           "value" is the generator event JSON as a string (records with only value_base64 are
           not UTF-8 events and are dropped)
  parquet  flumen's Parquet envelope; the event is taken from the value_schema's typed columns
           where present, else parsed from the binary `value` (--parquet-read auto|typed|envelope)

Modes:
  streaming (default)   Structured Streaming file source, --available-now or --processing-time
  --batch               one batch run over the bucket folders under --input; with
                        --require-marker _COMPLETE only over the buckets holding flumen's
                        completeness marker, listing every bucket it skips as incomplete

KPIs per (1-minute event-time tumbling window, cell_id, region):
  events                 number of events
  call_setups/call_drops count of CALL_SETUP / CALL_DROP events
  drop_rate              call_drops / (call_setups + call_drops); null when both are 0
  p95_setup_latency_ms   95th percentile (nearest-rank, percentile_approx with accuracy
                         10000, exact below ~10k samples) of setup_latency_ms over CALL_SETUP
                         events; null if the window has none
  bytes_up, bytes_down, total_bytes (= up + down), handovers, data_sessions, sms

Output modes:
  append    (default with --processing-time) watermark-finalised windows only; each micro-batch
            is written idempotently to <output>/batch_id=<n>/ (overwrite on replay), so a
            restarted query never duplicates rows. Windows still open when an availableNow run
            ends are emitted by a later run once newer data moves the watermark. Late rows are
            dropped (Spark filters input with the previous batch's watermark); keep --watermark
            above flumen's roll interval plus relay lag, or whole late files are dropped.
  complete  (default with --available-now) the full result table is rewritten to <output>
            after every micro-batch; all windows are present at the end of a run, so the sum of
            `events` equals the number of events read. State is never evicted: for bounded
            demo/test runs.
  --batch   the KPI table of the processed buckets is written to <output> (overwrite).
All are read back with spark.read.parquet(<output>).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling modules below
# Re-exported: count_check, the tests and scripts/demo use them through kpi_job.
from flumen_input import (EVENT_SCHEMA, FINAL_GLOB, FORMATS, PARQUET_READS, RECORD_SCHEMA,  # noqa: F401
                          parse_lines, parse_parquet, read_events_batch, read_events_stream)
import buckets as bucket_listing


def build_spark(app: str = "flumen-kpi", master: str = "local[2]", driver_memory: str = "640m",
                shuffle_partitions: int = 4, hdfs_url: Optional[str] = None,
                log_level: str = "WARN", extra_conf: Optional[dict] = None) -> SparkSession:
    """A small local Spark session that fits beside Kafka, HDFS and the relay on 2 cores.

    HDFS: hdfs:// URIs work with pyspark's bundled Hadoop client. HADOOP_CONF_DIR (if set in the
    environment) is put on the classpath by spark-submit; hdfs_url sets fs.defaultFS so that
    scheme-less paths resolve to HDFS.
    """
    b = (SparkSession.builder.appName(app).master(master)
         .config("spark.driver.memory", driver_memory)
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.driver.host", "127.0.0.1")
         .config("spark.driver.bindAddress", "127.0.0.1")
         .config("spark.sql.adaptive.enabled", "true"))
    if hdfs_url:
        b = b.config("spark.hadoop.fs.defaultFS", hdfs_url)
    for k, v in (extra_conf or {}).items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    return spark


def kpis(events: DataFrame, window: str = "1 minute", watermark: Optional[str] = None) -> DataFrame:
    """Per-cell KPIs over tumbling event-time windows. Works on batch and streaming DataFrames.

    `events` needs the EVENT_SCHEMA columns event_time (epoch ms), cell_id, region, event_type,
    bytes_up, bytes_down, setup_latency_ms. `watermark` (e.g. "2 minutes") is for streaming.
    """
    ev = events.withColumn("ts", F.timestamp_millis(F.col("event_time")))
    if watermark:
        ev = ev.withWatermark("ts", watermark)
    et = F.col("event_type")

    def n_of(kind: str):
        return F.sum(F.when(et == kind, 1).otherwise(0)).cast("long")

    up = F.coalesce(F.col("bytes_up"), F.lit(0))
    down = F.coalesce(F.col("bytes_down"), F.lit(0))
    agg = (ev.groupBy(F.window("ts", window).alias("w"), "cell_id", "region")
           .agg(F.count(F.lit(1)).alias("events"),
                n_of("CALL_SETUP").alias("call_setups"),
                n_of("CALL_DROP").alias("call_drops"),
                n_of("HANDOVER").alias("handovers"),
                n_of("DATA_SESSION").alias("data_sessions"),
                n_of("SMS").alias("sms"),
                F.sum(up).cast("long").alias("bytes_up"),
                F.sum(down).cast("long").alias("bytes_down"),
                F.percentile_approx(F.when(et == "CALL_SETUP", F.col("setup_latency_ms")), 0.95, 10000)
                 .alias("p95_setup_latency_ms")))
    attempts = F.col("call_setups") + F.col("call_drops")
    return agg.select(
        F.col("w.start").alias("window_start"),
        F.col("w.end").alias("window_end"),
        "cell_id", "region", "events", "call_setups", "call_drops",
        F.when(attempts > 0, F.col("call_drops") / attempts).alias("drop_rate"),
        "p95_setup_latency_ms", "bytes_up", "bytes_down",
        (F.col("bytes_up") + F.col("bytes_down")).alias("total_bytes"),
        "handovers", "data_sessions", "sms",
    )


def make_batch_writer(output: str, mode: str, console: bool, console_rows: int):
    def write(batch_df: DataFrame, batch_id: int) -> None:
        batch_df = batch_df.persist()
        try:
            n = batch_df.count()
            if mode == "complete":
                # Full result table every batch; replaying a batch rewrites the same content.
                batch_df.write.mode("overwrite").parquet(output)
            elif n > 0:
                # Idempotent per batch id: a replayed batch overwrites its own folder.
                batch_df.write.mode("overwrite").parquet(f"{output.rstrip('/')}/batch_id={batch_id}")
            if console:
                print(f"=== flumen KPI batch {batch_id} ({mode}): {n} rows ===", flush=True)
                if n:
                    rows = batch_df.orderBy(F.col("window_start").desc(), "cell_id").limit(console_rows).collect()
                    print(format_table(rows), flush=True)
        finally:
            batch_df.unpersist()
    return write


def format_table(rows) -> str:
    if not rows:
        return "(no rows)"
    cols = list(rows[0].asDict().keys())

    def fmt(v):
        if v is None:
            return "null"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)
    cells = [[fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = " | ".join(c.ljust(w) for c, w in zip(cols, widths))
    out = [line, "-+-".join("-" * w for w in widths)]
    out += [" | ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def progress_listener(out=sys.stderr):
    """A StreamingQueryListener printing one line per micro-batch: input rows, watermark and
    rows dropped as late (so a too-small --watermark is visible in the demo)."""
    from pyspark.sql.streaming import StreamingQueryListener

    class _Progress(StreamingQueryListener):
        last_batch = -1

        def onQueryStarted(self, event):
            pass

        def onQueryProgress(self, event):
            p = event.progress
            dropped = sum(op.numRowsDroppedByWatermark for op in p.stateOperators)
            wm = (p.eventTime or {}).get("watermark", "-")
            print(f"kpi_job: batch {p.batchId}: input rows {p.numInputRows}, watermark {wm}, "
                  f"late rows dropped {dropped}", file=out, flush=True)
            self.last_batch = p.batchId

        def onQueryIdle(self, event):
            pass

        def onQueryTerminated(self, event):
            pass

    return _Progress()


def start_query(spark: SparkSession, input_path: str, output: str, checkpoint: str, fmt: str = "jsonl",
                available_now: bool = True, processing_time: str = "10 seconds",
                output_mode: Optional[str] = None, window: str = "1 minute", watermark: str = "2 minutes",
                max_files_per_trigger: int = 20, console: bool = True, console_rows: int = 20,
                parquet_read: str = "auto"):
    mode = output_mode or ("complete" if available_now else "append")
    if mode not in ("append", "complete"):
        raise ValueError("output mode must be append or complete")
    events = read_events_stream(spark, input_path, fmt, max_files_per_trigger, parquet_read)
    result = kpis(events, window=window, watermark=watermark)
    w = (result.writeStream.outputMode(mode)
         .option("checkpointLocation", checkpoint)
         .foreachBatch(make_batch_writer(output, mode, console, console_rows))
         .queryName("flumen_kpis"))
    w = w.trigger(availableNow=True) if available_now else w.trigger(processingTime=processing_time)
    return w.start()


def run_batch(spark: SparkSession, input_path: str, output: str, fmt: str = "jsonl",
              require_marker: Optional[str] = None, window: str = "1 minute",
              parquet_read: str = "auto", out=sys.stderr) -> dict:
    """One batch KPI run over the buckets under `input_path`; with `require_marker`, only over
    the buckets holding that marker file (complete ones). Prints every bucket it skips, writes
    the KPI table to `output` (overwrite) and returns {processed, skipped, events, rows}.

    The KPI table covers the processed buckets together; a window whose events span a complete
    and an incomplete bucket is partial until the next run (rerun when the next marker lands).
    """
    found = bucket_listing.find_buckets(spark, input_path, require_marker)
    todo, skipped = bucket_listing.split_complete(found, require_marker is not None)
    for b in skipped:
        print(f"kpi_job: skipped bucket {b.rel}: incomplete, no {require_marker} "
              f"({b.final_files} final files)", file=out, flush=True)
    for b in todo:
        print(f"kpi_job: bucket {b.rel}: {b.final_files} final files, {b.final_bytes} bytes", file=out,
              flush=True)
    summary = {"processed": [b.rel for b in todo], "skipped": [b.rel for b in skipped],
               "events": 0, "rows": 0}
    todo = [b for b in todo if b.final_files]  # a marked bucket may be empty: nothing to read
    if not todo:
        print("kpi_job: no complete bucket with final files; nothing written", file=out, flush=True)
        return summary
    # Hive-style folders (dt=.../hr=...) become partition columns when read below their base.
    base = input_path if all(b.hive_style for b in todo) else None
    events = read_events_batch(spark, [b.path for b in todo], fmt, parquet_read, base_path=base)
    result = kpis(events, window=window).persist()
    try:
        result.write.mode("overwrite").parquet(output)
        agg = result.agg(F.count(F.lit(1)).alias("rows"), F.sum("events").alias("events")).first()
        summary["rows"], summary["events"] = agg["rows"], agg["events"] or 0
    finally:
        result.unpersist()
    print(f"kpi_job: batch over {len(summary['processed'])} bucket(s): {summary['events']} events, "
          f"{summary['rows']} KPI rows -> {output}; skipped {len(skipped)} incomplete bucket(s)",
          file=out, flush=True)
    return summary


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="flumen per-cell KPI streaming job",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--input", required=True, help="flumen final dir (hdfs://... or local path)")
    p.add_argument("--output", required=True, help="Parquet output dir (hdfs://... or local)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint dir (hdfs://... or local); required unless --batch")
    p.add_argument("--format", choices=FORMATS, default="jsonl")
    p.add_argument("--parquet-read", choices=PARQUET_READS, default="auto",
                   help="parquet: typed value_schema columns where present, else parse `value` (auto); "
                        "typed columns only (typed); always parse `value` (envelope)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--batch", action="store_true",
                   help="one batch run over the bucket folders under --input (no checkpoint)")
    g.add_argument("--available-now", "--trigger-once", dest="available_now", action="store_true",
                   help="process everything available, then stop (trigger(availableNow=True))")
    g.add_argument("--processing-time", default=None,
                   help="continuous mode with this trigger interval, e.g. '10 seconds' (default mode)")
    p.add_argument("--output-mode", choices=("append", "complete"), default=None,
                   help="default: complete with --available-now, append otherwise")
    p.add_argument("--require-marker", default=None, metavar="NAME",
                   help="with --batch: only buckets holding this marker file (e.g. _COMPLETE); the "
                        "others are listed as skipped")
    p.add_argument("--batch-report", default=None, metavar="FILE",
                   help="with --batch: write {processed, skipped, events, rows} as JSON here")
    p.add_argument("--window", default="1 minute")
    p.add_argument("--watermark", default="2 minutes")
    p.add_argument("--max-files-per-trigger", type=int, default=20)
    p.add_argument("--timeout", type=float, default=None,
                   help="continuous mode: stop after this many seconds (default: run until killed)")
    p.add_argument("--no-console", dest="console", action="store_false")
    p.add_argument("--console-rows", type=int, default=20)
    p.add_argument("--hdfs-url", default=os.environ.get("HDFS_URL"),
                   help="sets fs.defaultFS (env HDFS_URL); HADOOP_CONF_DIR is honoured too")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--driver-memory", default="640m")
    p.add_argument("--shuffle-partitions", type=int, default=4)
    a = p.parse_args(argv)
    if not a.batch and not a.checkpoint:
        p.error("--checkpoint is required unless --batch")
    if not a.batch and (a.require_marker or a.batch_report):
        p.error("--require-marker and --batch-report need --batch")
    return a


def main_batch(spark: SparkSession, a, t0: float) -> int:
    try:
        summary = run_batch(spark, a.input, a.output, fmt=a.format, require_marker=a.require_marker,
                            window=a.window, parquet_read=a.parquet_read)
    except (FileNotFoundError, ValueError) as e:
        print(f"kpi_job: {e}", file=sys.stderr)
        return 2
    if a.batch_report:
        with open(a.batch_report, "w") as f:
            json.dump(summary, f, indent=2)
    print(f"kpi_job: done in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


def main(argv=None) -> int:
    a = parse_args(argv)
    t0 = time.monotonic()
    spark = build_spark(master=a.master, driver_memory=a.driver_memory,
                        shuffle_partitions=a.shuffle_partitions, hdfs_url=a.hdfs_url)
    print(f"kpi_job: spark {spark.version} session ready in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    if a.batch:
        try:
            return main_batch(spark, a, t0)
        finally:
            spark.stop()
    listener = progress_listener()
    spark.streams.addListener(listener)
    q = start_query(spark, a.input, a.output, a.checkpoint, fmt=a.format,
                    available_now=a.available_now, processing_time=a.processing_time or "10 seconds",
                    output_mode=a.output_mode, window=a.window, watermark=a.watermark,
                    max_files_per_trigger=a.max_files_per_trigger, console=a.console,
                    console_rows=a.console_rows, parquet_read=a.parquet_read)
    try:
        if a.available_now:
            q.awaitTermination()
        elif a.timeout:
            q.awaitTermination(a.timeout)
            q.stop()
        else:
            q.awaitTermination()
    except KeyboardInterrupt:
        q.stop()
    # The listener bus is asynchronous: let it print the last batch before we exit.
    last = (q.lastProgress or {}).get("batchId", -1)
    deadline = time.monotonic() + 3
    while listener.last_batch < last and time.monotonic() < deadline:
        time.sleep(0.1)
    if q.exception() is not None:
        print(f"kpi_job: query failed: {q.exception()}", file=sys.stderr)
        return 1
    print(f"kpi_job: done in {time.monotonic() - t0:.1f} s; output {a.output}", file=sys.stderr)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
