"""Read flumen's final files as generator events: text, jsonl and Parquet.

One job: turn final files (batch or streaming) into a DataFrame with the EVENT_SCHEMA columns,
optionally keeping the Kafka coordinates of each record (rec_topic, rec_partition, rec_offset)
for checks. kpi_job computes KPIs on top; count_check counts.

Formats (`fmt`):
  text     each line is the Kafka record value = one generator event JSON object
  jsonl    each line is flumen's record envelope {"topic","partition","offset","timestamp","key",
           "headers","value"} whose "value" string holds the event JSON (records with only
           value_base64 are not UTF-8 events and are dropped)
  parquet  flumen's Parquet envelope (i13-contract.md): topic, partition, offset, timestamp, key,
           value (binary), headers, then, with `[hdfs.parquet] value_schema`, one typed column per
           declared field (the EVENT_SCHEMA names). How the event is taken (`parquet_read`):
             auto      (default) the typed columns where a row has them (event_time and cell_id
                       not null), else the event JSON parsed from `value`. Correct for any mix of
                       files written with and without a value_schema.
             typed     the typed columns only; `value` is never read (the fastest). A row without
                       them is not an event. Batch reads refuse input without the typed columns.
             envelope  always parse `value`, ignore typed columns.
Only final names are read (pathGlobFilter=FINAL_GLOB on the file name); the Spark file source
itself skips `_`/`.`-prefixed names (flumen's in-use folder `_flumen/`, markers `_COMPLETE`) and
`._COPYING_`. Hive-style bucket folders (dt=.../hr=...) are discovered as partition columns.
"""
from __future__ import annotations

from typing import List, Optional

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, BinaryType, DoubleType, IntegerType, LongType,
                               StringType, StructField, StructType, TimestampType)

# Only final file names: prefix+topic+partition+first+last[ext]. Applied to the file name.
FINAL_GLOB = "*+*+*+*+*"

FORMATS = ("text", "jsonl", "parquet")
PARQUET_READS = ("auto", "typed", "envelope")

EVENT_SCHEMA = StructType([
    StructField("seq", LongType()),
    StructField("run_id", StringType()),
    StructField("event_time", LongType()),
    StructField("event_time_iso", StringType()),
    StructField("cell_id", StringType()),
    StructField("region", StringType()),
    StructField("subscriber", StringType()),
    StructField("event_type", StringType()),
    StructField("bytes_up", LongType()),
    StructField("bytes_down", LongType()),
    StructField("setup_latency_ms", DoubleType()),
])
EVENT_COLUMNS = [f.name for f in EVENT_SCHEMA.fields]

# Outer jsonl record. "headers" (an ordered list of {"key"|"key_base64", "value"|"value_base64"}
# objects) is deliberately not declared: it is not needed; from_json ignores undeclared fields.
RECORD_SCHEMA = StructType([
    StructField("topic", StringType()),
    StructField("partition", IntegerType()),
    StructField("offset", LongType()),
    StructField("timestamp", LongType()),
    StructField("key", StringType()),
    StructField("value", StringType()),
    StructField("value_base64", StringType()),
])

# The Parquet envelope of i13-contract.md, in column order. Spark ignores nullability on read.
ENVELOPE_SCHEMA = StructType([
    StructField("topic", StringType(), False),
    StructField("partition", IntegerType(), False),
    StructField("offset", LongType(), False),
    StructField("timestamp", TimestampType()),
    StructField("key", BinaryType()),
    StructField("value", BinaryType()),
    StructField("headers", ArrayType(StructType([
        StructField("key", BinaryType(), False),
        StructField("value", BinaryType()),
    ]), False), False),
])
ENVELOPE_COLUMNS = [f.name for f in ENVELOPE_SCHEMA.fields]
COORDINATES = ["topic", "partition", "offset"]


def parquet_read_schema(parquet_read: str) -> StructType:
    """The columns a Parquet read asks for: only what the chosen way of taking events needs, so
    `typed` never reads `value` and `envelope` never reads the typed columns."""
    if parquet_read not in PARQUET_READS:
        raise ValueError(f"parquet_read must be one of {PARQUET_READS}, got {parquet_read!r}")
    env = ENVELOPE_SCHEMA.fields
    if parquet_read == "envelope":
        return StructType(env)
    coords = [f for f in env if f.name in COORDINATES]
    if parquet_read == "typed":
        return StructType(coords + EVENT_SCHEMA.fields)
    return StructType(env + EVENT_SCHEMA.fields)


def parse_lines(lines: DataFrame, fmt: str, keep_record: bool = False,
                keep_unparsed: bool = False) -> DataFrame:
    """Turn a DataFrame with a string column `value` (one file line per row) into events.

    Lines that do not parse (or jsonl records without a UTF-8 value) are dropped.
    keep_record=True keeps the outer jsonl fields as rec_topic/rec_partition/rec_offset and
    every other input column (e.g. a file-name column) for checks; keep_unparsed=True keeps
    lines that are not events, with null event columns (for counting them).
    """
    if fmt not in ("text", "jsonl"):
        raise ValueError(f"parse_lines reads text or jsonl lines, got {fmt!r}")
    passthrough = [c for c in lines.columns if c != "value"] if keep_record else []
    if fmt == "jsonl":
        rec = lines.select(F.from_json("value", RECORD_SCHEMA).alias("r"), *passthrough)
        cols = [F.from_json(F.col("r.value"), EVENT_SCHEMA).alias("e"), *passthrough]
        if keep_record:
            cols += [F.col("r.topic").alias("rec_topic"), F.col("r.partition").alias("rec_partition"),
                     F.col("r.offset").alias("rec_offset")]
        if not keep_unparsed:
            rec = rec.where(F.col("r.value").isNotNull())
        ev = rec.select(*cols)
    else:
        ev = lines.select(F.from_json("value", EVENT_SCHEMA).alias("e"), *passthrough)
    return _events_out(ev, keep_unparsed)


def parse_parquet(rows: DataFrame, parquet_read: str = "auto", keep_record: bool = False,
                  keep_unparsed: bool = False) -> DataFrame:
    """Turn Parquet envelope rows (with or without typed columns) into events.

    keep_record / keep_unparsed as in parse_lines; the record coordinates are the envelope's
    topic/partition/offset columns.
    """
    if parquet_read not in PARQUET_READS:
        raise ValueError(f"parquet_read must be one of {PARQUET_READS}, got {parquet_read!r}")
    has_typed = all(c in rows.columns for c in EVENT_COLUMNS)
    has_value = "value" in rows.columns
    typed = F.struct(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in EVENT_SCHEMA.fields])
    parsed = F.from_json(F.col("value").cast("string"), EVENT_SCHEMA) if has_value else None
    if parquet_read == "typed" or (parquet_read == "auto" and not has_value):
        if not has_typed:
            missing = [c for c in EVENT_COLUMNS if c not in rows.columns]
            raise ValueError(f"parquet_read=typed needs the value_schema columns; missing {missing}")
        event = typed
    elif parquet_read == "auto" and has_typed:
        # Row by row: files written before a value_schema was declared have null typed columns.
        # CASE WHEN evaluates only the taken branch, so typed rows never pay for from_json.
        typed_ok = F.col("event_time").isNotNull() & F.col("cell_id").isNotNull()
        event = F.when(typed_ok, typed).otherwise(parsed)
    else:
        if not has_value:
            raise ValueError("parquet_read=envelope needs the `value` column")
        event = parsed
    envelope = set(ENVELOPE_COLUMNS) | set(EVENT_COLUMNS)
    passthrough = [c for c in rows.columns if c not in envelope] if keep_record else []
    cols = [event.alias("e"), *passthrough]
    if keep_record:
        cols += [F.col("topic").alias("rec_topic"), F.col("partition").alias("rec_partition"),
                 F.col("offset").alias("rec_offset")]
    return _events_out(rows.select(*cols), keep_unparsed)


def _events_out(ev: DataFrame, keep_unparsed: bool) -> DataFrame:
    extra = [c for c in ev.columns if c != "e"]
    if not keep_unparsed:
        ev = ev.where(F.col("e.event_time").isNotNull() & F.col("e.cell_id").isNotNull())
    return ev.select("e.*", *extra)


def read_rows_batch(spark: SparkSession, paths, fmt: str, parquet_read: str = "auto",
                    base_path: Optional[str] = None) -> DataFrame:
    """Raw rows of final files: a `value` line column (text, jsonl) or the Parquet columns.

    `paths`: one path or a list (e.g. complete bucket folders); `base_path` makes Spark derive
    Hive-style partition columns (dt, hr) from the folders between it and each path.
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    r = spark.read.option("pathGlobFilter", FINAL_GLOB)
    if base_path:
        r = r.option("basePath", base_path)
    if fmt == "parquet":
        if parquet_read == "typed":
            _require_typed_columns(spark, paths, base_path)
        return r.schema(parquet_read_schema(parquet_read)).parquet(*paths)
    return r.format("text").load(paths)


def _require_typed_columns(spark: SparkSession, paths: List[str], base_path: Optional[str]) -> None:
    """parquet_read=typed over files without typed columns would read nulls, i.e. no event at
    all: refuse it by name instead (one footer read)."""
    r = spark.read.option("pathGlobFilter", FINAL_GLOB)
    if base_path:
        r = r.option("basePath", base_path)
    have = set(r.parquet(*paths).columns)
    missing = [c for c in EVENT_COLUMNS if c not in have]
    if missing:
        raise ValueError(f"--parquet-read typed: the input has no value_schema columns {missing}; "
                         "use --parquet-read auto")


def events_from_rows(rows: DataFrame, fmt: str, parquet_read: str = "auto", keep_record: bool = False,
                     keep_unparsed: bool = False) -> DataFrame:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "parquet":
        return parse_parquet(rows, parquet_read, keep_record, keep_unparsed)
    return parse_lines(rows, fmt, keep_record, keep_unparsed)


def read_events_batch(spark: SparkSession, paths, fmt: str, parquet_read: str = "auto",
                      base_path: Optional[str] = None) -> DataFrame:
    rows = read_rows_batch(spark, paths, fmt, parquet_read, base_path)
    return events_from_rows(rows, fmt, parquet_read)


def read_events_stream(spark: SparkSession, path: str, fmt: str, max_files_per_trigger: int = 20,
                       parquet_read: str = "auto") -> DataFrame:
    """Streaming events. Parquet needs a schema up front (the file source does not infer one):
    the read schema of `parquet_read`; files without typed columns read them as null, which
    `auto` handles row by row."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    r = (spark.readStream.option("pathGlobFilter", FINAL_GLOB)
         .option("maxFilesPerTrigger", str(max_files_per_trigger)))
    if fmt == "parquet":
        rows = r.schema(parquet_read_schema(parquet_read)).parquet(path)
    else:
        rows = r.format("text").load(path)
    return events_from_rows(rows, fmt, parquet_read)
