"""Reads flumen's Parquet files with pyarrow and with Spark, for tests/parquet.rs.

    python parquet_read.py <dir>

<dir> holds the final files copied from HDFS under their Hive-style directories
(dt=YYYY-MM-DD/hr=HH/...). Prints one JSON document on the last stdout line:
{"pyarrow": [row...], "spark": [row...], "spark_columns": [name...]}, each row with binary
fields as base64 (null stays null) and headers as [[key_b64, value_b64_or_null], ...]. The
Rust test compares every field with what it produced; this script only reads.
"""

import base64
import json
import os
import sys


def b64(b):
    return None if b is None else base64.b64encode(bytes(b)).decode()


def envelope(get):
    headers = get("headers")
    return {
        "topic": get("topic"),
        "partition": get("partition"),
        "offset": get("offset"),
        "timestamp_ms": get("timestamp_ms"),
        "key": b64(get("key")),
        "value": b64(get("value")),
        "headers": [[b64(h["key"]), b64(h["value"])] for h in headers],
    }


def typed(get, names):
    return {n: get(n) for n in names}


ENVELOPE = ["topic", "partition", "offset", "timestamp", "key", "value", "headers"]


def read_pyarrow(root):
    import pyarrow.parquet as pq

    rows = []
    for d, _, files in sorted(os.walk(root)):
        for f in sorted(files):
            t = pq.read_table(os.path.join(d, f), partitioning=None)
            names = t.column_names
            assert names[:7] == ENVELOPE, names
            extra = names[7:]
            for r in t.to_pylist():
                ts = r["timestamp"]
                r["timestamp_ms"] = None if ts is None else int(round(ts.timestamp() * 1000))
                row = envelope(r.get)
                row.update(typed(r.get, extra))
                row["file"] = os.path.relpath(os.path.join(d, f), root)
                rows.append(row)
    return rows


def read_spark(root):
    from pyspark.sql import SparkSession, functions as F

    spark = (SparkSession.builder.appName("flumen-parquet-test").master("local[1]")
             .config("spark.driver.memory", "512m")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    # file:// explicitly: with HADOOP_CONF_DIR set, a bare path would resolve against HDFS.
    df = spark.read.parquet("file://" + os.path.abspath(root))
    columns = df.columns
    df = df.withColumn("timestamp_ms", F.col("timestamp").cast("double") * 1000)
    rows = []
    for r in df.collect():
        d = r.asDict(recursive=True)
        d["timestamp_ms"] = None if d["timestamp_ms"] is None else int(round(d["timestamp_ms"]))
        row = envelope(d.get)
        row.update(typed(d.get, [c for c in columns if c not in ENVELOPE]))
        row["dt"] = str(d["dt"])
        rows.append(row)
    spark.stop()
    return rows, columns


def main():
    root = sys.argv[1]
    arrow = read_pyarrow(root)
    spark, columns = read_spark(root)
    print(json.dumps({"pyarrow": arrow, "spark": spark, "spark_columns": columns}, default=str))


if __name__ == "__main__":
    main()
