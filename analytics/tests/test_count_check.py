"""count_check on local final files: match, mismatch, duplicates, in-use files ignored."""
import json

from conftest import local_env
import os
import shutil
import subprocess
import sys

import pytest

import count_check
from flumen_testutil import final_name, jsonl_line, make_report, write_final_files
from gen_events import EventModel

START = 1732442400000
HERE = os.path.dirname(os.path.abspath(__file__))


def gen(n=400, seed=11):
    return list(EventModel(seed=seed, cells=8, start_ms=START).events(n))


def check(spark, d, report, fmt="jsonl", only_run=False):
    stats = count_check.collect_stats(spark, str(d), fmt, report["run_id"] if only_run else None)
    return count_check.evaluate(stats, report, fmt, only_run)


def test_file_name_parsing():
    m = count_check.parse_file_name("test-events+flume.txn+0+00000000000000000000+00000000000000000099.jsonl")
    assert m == {"prefix": "test-events", "topic": "flume.txn", "partition": 0, "first": 0, "last": 99,
                 "ext": ".jsonl"}
    assert count_check.parse_file_name("a+b+c+1+2.jsonl") is None
    assert count_check.parse_file_name("x+t+3+00000000000000000005+00000000000000000009.txt.gz")["ext"] == ".txt.gz"


def test_match_and_in_use_ignored(spark, tmp_path):
    events = gen()
    _, per_part, _ = write_final_files(str(tmp_path), events, fmt="jsonl", per_file=37)
    # An in-use file under `_tmp/` must not be counted.
    os.makedirs(tmp_path / "_tmp")
    extra = gen(5, seed=99)
    with open(tmp_path / "_tmp" / final_name("flume.txn", 0, 900, 904, ".jsonl"), "w") as f:
        f.write("\n".join(jsonl_line("flume.txn", 0, 900 + i, e) for i, e in enumerate(extra)) + "\n")
    v = check(spark, tmp_path, make_report(events, per_part))
    assert v["ok"], v["text"]
    assert v["total_found"] == len(events) and v["duplicates"] == 0
    assert "RESULT: OK" in v["text"]


def test_text_format_match(spark, tmp_path):
    events = gen(150)
    _, per_part, _ = write_final_files(str(tmp_path), events, fmt="text", per_file=40)
    v = check(spark, tmp_path, make_report(events, per_part), fmt="text")
    assert v["ok"], v["text"]


def test_missing_file_is_a_mismatch(spark, tmp_path):
    events = gen()
    paths, per_part, _ = write_final_files(str(tmp_path), events, fmt="jsonl", per_file=37)
    os.remove(paths[1])
    v = check(spark, tmp_path, make_report(events, per_part))
    assert not v["ok"]
    assert v["total_found"] < len(events)
    assert any(p.startswith("total:") for p in v["problems"])
    assert any(p.startswith("cell ") for p in v["problems"])
    assert any(p.startswith("partition ") for p in v["problems"])


def test_duplicate_file_is_detected(spark, tmp_path):
    events = gen()
    paths, per_part, _ = write_final_files(str(tmp_path), events, fmt="jsonl", per_file=37)
    # A relay that re-delivered a range under another name: same records twice.
    src = paths[0]
    shutil.copy(src, os.path.join(tmp_path, "again" + os.path.basename(src)[len("test-events"):]))
    v = check(spark, tmp_path, make_report(events, per_part))
    assert not v["ok"]
    assert v["duplicates"] == 37
    assert any("duplicated seq ids" in p for p in v["problems"])
    assert any("overlapping offsets" in p for p in v["problems"])
    assert any("Kafka records" in p for p in v["problems"])


def test_duplicate_with_same_total_still_fails(spark, tmp_path):
    # One event lost and another duplicated: total matches, duplicates must still fail.
    events = gen(100)
    broken = events[:-1] + [events[0]]
    _, per_part, _ = write_final_files(str(tmp_path), broken, fmt="text", per_file=200)
    report = make_report(events, {})
    report.pop("per_partition")
    v = check(spark, tmp_path, report, fmt="text", only_run=True)
    assert v["total_found"] == 100
    assert not v["ok"]
    assert v["duplicates"] == 1
    assert any("distinct seq ids" in p for p in v["problems"])


def test_cli_exit_codes(tmp_path):
    events = gen(120)
    paths, per_part, _ = write_final_files(str(tmp_path / "d"), events, fmt="jsonl", per_file=50)
    rep = make_report(events, per_part)
    rep["per_cell"]["cell-0000"] += 1  # report claims one more event than was written
    rep["total"] += 1
    (tmp_path / "r.json").write_text(json.dumps(rep))
    proc = subprocess.run([sys.executable, os.path.join(os.path.dirname(HERE), "count_check.py"),
                           "--input", str(tmp_path / "d"), "--report", str(tmp_path / "r.json"),
                           "--json-out", str(tmp_path / "v.json")],
                          capture_output=True, text=True, timeout=300, env=local_env())
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "MISMATCH" in proc.stdout and "cell-0000" in proc.stdout
    verdict = json.loads((tmp_path / "v.json").read_text())
    assert verdict["ok"] is False and verdict["total_found"] == 120


def test_unparseable_line_fails(spark, tmp_path):
    events = gen(60)
    paths, per_part, _ = write_final_files(str(tmp_path), events, fmt="jsonl", per_file=100)
    with open(paths[0], "a") as f:
        f.write("{not json\n")
    v = check(spark, tmp_path, make_report(events, per_part))
    assert v["total_found"] == 60
    assert not v["ok"]
    assert any("not parseable events" in p for p in v["problems"])


# ---- parquet (the contract's envelope, with and without typed columns), Hive-style layout ----

def hive(e):
    from flumen_testutil import hive_hour
    return hive_hour(e)


def gen_hours(n=400):
    # 1 event per 5 s of event time from 09:58: the files fall into hr=09 and hr=10 folders.
    return list(EventModel(seed=11, cells=8, start_ms=1732442280000, sim_eps=0.2).events(n))


@pytest.mark.parametrize("fmt", ["parquet", "parquet-typed"])
def test_parquet_match(spark, tmp_path, fmt):
    events = gen_hours()
    paths, per_part, _ = write_final_files(str(tmp_path), events, fmt=fmt, per_file=37, bucket_of=hive)
    assert {os.path.basename(os.path.dirname(p)) for p in paths} == {"hr=09", "hr=10"}
    (tmp_path / "dt=2024-11-24" / "hr=09" / "_COMPLETE").write_text("")  # a marker is no data
    v = check(spark, tmp_path, make_report(events, per_part), fmt="parquet")
    assert v["ok"], v["text"]
    assert v["total_found"] == len(events) and v["duplicates"] == 0


def test_parquet_duplicate_and_gap_are_found(spark, tmp_path):
    import pyarrow.parquet as pq

    events = gen_hours()
    paths, per_part, _ = write_final_files(str(tmp_path), events, fmt="parquet-typed", per_file=37, bucket_of=hive)
    report = make_report(events, per_part)
    # Duplicate: a relay that re-delivered a range under another name.
    dup_src = paths[0]
    dup_meta = count_check.parse_file_name(os.path.basename(dup_src))
    shutil.copy(dup_src, os.path.join(os.path.dirname(dup_src), "again" + os.path.basename(dup_src)[len("test-events"):]))
    # Gap: a file that lost records 10..14 of its range, its name unchanged.
    def span(q):
        m = count_check.parse_file_name(os.path.basename(q))
        return m["last"] - m["first"]
    gap_src = max(paths[1:], key=span)  # a full 37-record file
    gap_meta = count_check.parse_file_name(os.path.basename(gap_src))
    assert gap_meta["last"] - gap_meta["first"] >= 20
    t = pq.read_table(gap_src)
    keep = [i for i in range(t.num_rows) if not 10 <= i <= 14]
    pq.write_table(t.take(keep), gap_src)
    lo, hi = gap_meta["first"] + 10, gap_meta["first"] + 14

    v = check(spark, tmp_path, report, fmt="parquet")
    assert not v["ok"]
    assert any("Kafka records (topic, partition, offset) appear more than once" in p for p in v["problems"])
    assert f"record flume.txn-{dup_meta['partition']}@{dup_meta['first']} x2" in v["text"]
    n_dup = dup_meta["last"] - dup_meta["first"] + 1
    assert v["duplicates"] == n_dup
    assert f"gap: partition {gap_meta['partition']}: 5 delivered offsets in no final file ({lo}..{hi})" \
        in v["problems"], v["problems"]
    assert v["total_found"] == len(events) + n_dup - 5


def test_parquet_lost_file_is_a_gap_and_a_mismatch(spark, tmp_path):
    events = gen_hours()
    paths, per_part, _ = write_final_files(str(tmp_path), events, fmt="parquet", per_file=37, bucket_of=hive)
    meta = count_check.parse_file_name(os.path.basename(paths[1]))
    os.remove(paths[1])
    v = check(spark, tmp_path, make_report(events, per_part), fmt="parquet")
    assert not v["ok"]
    assert any(p.startswith(f"gap: partition {meta['partition']}:") and f"({meta['first']}..{meta['last']})" in p
               for p in v["problems"]), v["problems"]
    assert any(p.startswith("total:") for p in v["problems"])


def test_text_lost_file_is_a_gap(spark, tmp_path):
    events = gen()
    paths, per_part, _ = write_final_files(str(tmp_path), events, fmt="text", per_file=37)
    meta = count_check.parse_file_name(os.path.basename(paths[2]))
    os.remove(paths[2])
    v = check(spark, tmp_path, make_report(events, per_part), fmt="text")
    assert f"gap: partition {meta['partition']}: {meta['last'] - meta['first'] + 1} delivered offsets in no " \
        f"final file ({meta['first']}..{meta['last']})" in v["problems"], v["problems"]


def test_missing_ranges():
    assert count_check.missing_ranges([[0, 4], [10, 12]], 0, 15) == [[5, 9], [13, 15]]
    assert count_check.missing_ranges([[3, 20]], 0, 10) == [[0, 2]]
    assert count_check.missing_ranges([[0, 5], [2, 9]], 0, 9) == []
    assert count_check.missing_ranges([], 5, 6) == [[5, 6]]
