"""Batch mode: only buckets holding the completeness marker are processed; the others are
named as skipped. Hive-style and plain time-bucketed layouts."""
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone

import pytest

import buckets
import kpi_job
from conftest import local_env
from flumen_testutil import final_name, hive_hour, write_final_files
from test_parquet import kpi_rows_of, model_events

HERE = os.path.dirname(os.path.abspath(__file__))
H9, H10, H11 = "dt=2024-11-24/hr=09", "dt=2024-11-24/hr=10", "dt=2024-11-24/hr=11"


def plain_hour(event):
    t = datetime.fromtimestamp(event["event_time"] / 1000, tz=timezone.utc)
    return t.strftime("%Y/%m/%d/%H")


def layout(tmp_path, fmt, bucket_of, marked):
    events = model_events()
    write_final_files(str(tmp_path), events, fmt=fmt, per_file=40, bucket_of=bucket_of)
    for rel in marked:
        (tmp_path / rel / "_COMPLETE").write_text("")
    # flumen's in-use folder holds a half-written file: never a bucket, never read.
    os.makedirs(tmp_path / "_flumen" / "tmp", exist_ok=True)
    (tmp_path / "_flumen" / "tmp" / final_name("flume.txn", 0, 9, 9, ".parquet")).write_bytes(b"PAR1 partial")
    return events


def kpi_table(spark, out):
    return sorted(tuple(r) for r in spark.read.parquet(str(out)).collect())


@pytest.mark.parametrize("fmt", ["parquet-typed", "parquet", "jsonl"])
def test_batch_skips_the_unmarked_bucket(spark, tmp_path, fmt):
    inp, out = tmp_path / "final", tmp_path / "kpi"
    events = layout(inp, fmt, hive_hour, marked=[H9, H11])
    read_fmt = "parquet" if fmt.startswith("parquet") else fmt
    lines = []

    class Out:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    summary = kpi_job.run_batch(spark, str(inp), str(out), fmt=read_fmt, require_marker="_COMPLETE", out=Out())
    assert summary["processed"] == [H9, H11]
    assert summary["skipped"] == [H10]
    assert any(f"skipped bucket {H10}: incomplete, no _COMPLETE" in s for s in lines), lines
    complete = [e for e in events if hive_hour(e) in (H9, H11)]
    assert 0 < len(complete) < len(events)
    assert summary["events"] == len(complete)
    assert kpi_table(spark, out) == kpi_rows_of(spark, complete)

    # The missing marker lands: the next run takes all three hours.
    (inp / H10 / "_COMPLETE").write_text("")
    summary = kpi_job.run_batch(spark, str(inp), str(out), fmt=read_fmt, require_marker="_COMPLETE", out=Out())
    assert summary["skipped"] == [] and summary["events"] == len(events)
    assert kpi_table(spark, out) == kpi_rows_of(spark, events)


def test_batch_without_marker_requirement_reads_every_bucket(spark, tmp_path):
    inp, out = tmp_path / "final", tmp_path / "kpi"
    events = layout(inp, "parquet-typed", hive_hour, marked=[])
    summary = kpi_job.run_batch(spark, str(inp), str(out), fmt="parquet", out=open(os.devnull, "w"))
    assert summary["processed"] == [H9, H10, H11] and summary["events"] == len(events)


def test_batch_on_a_plain_time_layout(spark, tmp_path):
    # Not Hive-style (2024/11/24/10): buckets are still the folders holding final files.
    inp, out = tmp_path / "final", tmp_path / "kpi"
    events = layout(inp, "parquet-typed", plain_hour, marked=["2024/11/24/10"])
    found = buckets.find_buckets(spark, str(inp), "_COMPLETE")
    assert [(b.rel, b.marked, b.hive_style) for b in found] == [
        ("2024/11/24/09", False, False), ("2024/11/24/10", True, False), ("2024/11/24/11", False, False)]
    want = Counter(plain_hour(e) for e in events)
    assert sum(b.final_files for b in found) >= len(want)
    summary = kpi_job.run_batch(spark, str(inp), str(out), fmt="parquet", require_marker="_COMPLETE",
                                out=open(os.devnull, "w"))
    assert summary["processed"] == ["2024/11/24/10"]
    assert summary["skipped"] == ["2024/11/24/09", "2024/11/24/11"]
    assert summary["events"] == want["2024/11/24/10"]


def test_batch_with_no_complete_bucket_writes_nothing(spark, tmp_path):
    inp, out = tmp_path / "final", tmp_path / "kpi"
    layout(inp, "parquet-typed", hive_hour, marked=[])
    summary = kpi_job.run_batch(spark, str(inp), str(out), fmt="parquet", require_marker="_COMPLETE",
                                out=open(os.devnull, "w"))
    assert summary["processed"] == [] and summary["skipped"] == [H9, H10, H11]
    assert not out.exists()


def test_batch_cli(tmp_path):
    inp, out = tmp_path / "final", tmp_path / "kpi"
    events = layout(inp, "parquet-typed", hive_hour, marked=[H10])
    proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "kpi_job.py"), "--batch",
                           "--require-marker", "_COMPLETE", "--format", "parquet", "--input", str(inp),
                           "--output", str(out), "--batch-report", str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=300, env=local_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"skipped bucket {H9}: incomplete, no _COMPLETE" in proc.stderr
    assert f"skipped bucket {H11}: incomplete, no _COMPLETE" in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["processed"] == [H10] and report["skipped"] == [H9, H11]
    assert report["events"] == sum(1 for e in events if hive_hour(e) == H10)


def test_cli_refuses_marker_without_batch(tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "kpi_job.py"),
                           "--require-marker", "_COMPLETE", "--input", str(tmp_path), "--output", str(tmp_path),
                           "--checkpoint", str(tmp_path / "cp")],
                          capture_output=True, text=True, timeout=60, env=local_env())
    assert proc.returncode == 2 and "--require-marker and --batch-report need --batch" in proc.stderr
