"""Parquet input: the contract's envelope (value -> JSON) and the value_schema's typed columns
give the same KPIs as jsonl on the same events, in batch and streaming, in any mix of files."""
import json
import os
from datetime import datetime, timezone

import pytest

import flumen_input
import kpi_job
from flumen_testutil import (final_name, hive_hour, parquet_rows, write_final_files,
                             write_parquet)
from gen_events import EventModel
from test_kpis import EXPECTED, assert_rows_match, hand_made_events, rows_by_key

START = int(datetime(2024, 11, 24, 9, 30, tzinfo=timezone.utc).timestamp() * 1000)


def model_events(n=600, sim_eps=0.1):
    """n events from 09:30 on; at 0.1 events/s of event time they span three hours."""
    return list(EventModel(seed=5, cells=7, start_ms=START, sim_eps=sim_eps).events(n))


def kpi_rows(spark, path, fmt, parquet_read="auto"):
    df = kpi_job.kpis(kpi_job.read_events_batch(spark, str(path), fmt, parquet_read))
    return sorted(tuple(r) for r in df.collect())


def test_fixture_follows_the_contract_schema(tmp_path):
    # Guards the fixtures themselves: the readers are only tested against the contract if the
    # files carry its physical types (a TIMESTAMP(MILLIS, UTC) column, a LIST of pairs, ...).
    import pyarrow.parquet as pq

    paths, _, _ = write_final_files(str(tmp_path), hand_made_events(), fmt="parquet-typed", per_file=100)
    f = pq.ParquetFile(paths[0])
    names = f.schema_arrow.names
    assert names[:7] == ["topic", "partition", "offset", "timestamp", "key", "value", "headers"]
    assert names[7:] == flumen_input.EVENT_COLUMNS
    col = {f.schema.column(i).path: f.schema.column(i) for i in range(len(f.schema))}
    ts = json.loads(col["timestamp"].logical_type.to_json())
    assert (ts["Type"], ts["timeUnit"], ts["isAdjustedToUTC"]) == ("Timestamp", "milliseconds", True)
    assert col["partition"].physical_type == "INT32" and col["offset"].physical_type == "INT64"
    assert col["value"].physical_type == "BYTE_ARRAY" and col["value"].logical_type.type == "NONE"
    # Required list, required pair, required key: only the repeated level adds a definition level.
    assert col["headers.list.element.key"].max_definition_level == 1
    assert col["headers.list.element.value"].max_definition_level == 2  # the optional value


@pytest.mark.parametrize("fixture_fmt,parquet_read", [
    ("parquet", "auto"), ("parquet", "envelope"),
    ("parquet-typed", "auto"), ("parquet-typed", "typed"), ("parquet-typed", "envelope")])
def test_parquet_known_answers(spark, tmp_path, fixture_fmt, parquet_read):
    events = hand_made_events()
    write_final_files(str(tmp_path), events, fmt=fixture_fmt, partitions=2, per_file=7)
    parsed = kpi_job.read_events_batch(spark, str(tmp_path), "parquet", parquet_read)
    assert parsed.count() == len(events)
    got = rows_by_key(kpi_job.kpis(parsed).collect())
    assert_rows_match(got, EXPECTED)


def test_parquet_envelope_and_typed_equal_jsonl_on_the_same_events(spark, tmp_path):
    events = model_events()
    for fmt in ("jsonl", "parquet", "parquet-typed"):
        write_final_files(str(tmp_path / fmt), events, fmt=fmt, per_file=45, bucket_of=hive_hour)
    want = kpi_rows(spark, tmp_path / "jsonl", "jsonl")
    assert sum(r[4] for r in want) == len(events)  # events column: nothing lost on the jsonl side
    assert kpi_rows(spark, tmp_path / "parquet", "parquet") == want
    assert kpi_rows(spark, tmp_path / "parquet-typed", "parquet", "typed") == want
    assert kpi_rows(spark, tmp_path / "parquet-typed", "parquet", "auto") == want


def test_typed_columns_are_used_without_parsing_value(spark, tmp_path):
    # The `value` bytes are not JSON here, so any result can only come from the typed columns.
    events = hand_made_events()
    cols = parquet_rows("flume.txn", 0, 0, events, typed=True, values=[b"\xffnot json"] * len(events))
    write_parquet(str(tmp_path / final_name("flume.txn", 0, 0, len(events) - 1, ".parquet")), cols, True)
    for how in ("auto", "typed"):
        got = rows_by_key(kpi_job.kpis(kpi_job.read_events_batch(spark, str(tmp_path), "parquet", how)).collect())
        assert_rows_match(got, EXPECTED)
    assert kpi_job.read_events_batch(spark, str(tmp_path), "parquet", "envelope").count() == 0
    plan = kpi_job.read_events_batch(spark, str(tmp_path), "parquet", "typed")._jdf.queryExecution() \
        .executedPlan().toString()
    read_schema = plan.split("ReadSchema: ", 1)[1]
    assert "value:binary" not in read_schema and "cell_id:string" in read_schema


def test_auto_reads_a_mix_of_files_with_and_without_typed_columns(spark, tmp_path):
    # A value_schema declared while the relay runs: older files lack the typed columns.
    events = hand_made_events()
    half = len(events) // 2
    for fmt, part, evs, first in (("parquet", 0, events[:half], 0), ("parquet-typed", 0, events[half:], half)):
        write_parquet(str(tmp_path / final_name("flume.txn", part, first, first + len(evs) - 1, ".parquet")),
                      parquet_rows("flume.txn", part, first, evs, typed=fmt == "parquet-typed"),
                      fmt == "parquet-typed")
    got = rows_by_key(kpi_job.kpis(kpi_job.read_events_batch(spark, str(tmp_path), "parquet", "auto")).collect())
    assert_rows_match(got, EXPECTED)


def test_typed_read_of_files_without_typed_columns_is_refused(spark, tmp_path):
    write_final_files(str(tmp_path), hand_made_events(), fmt="parquet", per_file=100)
    with pytest.raises(ValueError, match="no value_schema columns"):
        kpi_job.read_events_batch(spark, str(tmp_path), "parquet", "typed")


def test_hive_partition_discovery(spark, tmp_path):
    events = model_events()
    write_final_files(str(tmp_path), events, fmt="parquet-typed", per_file=45, bucket_of=hive_hour)
    rows = flumen_input.read_rows_batch(spark, str(tmp_path), "parquet")
    assert {"dt", "hr"} <= set(rows.columns)
    got = {(str(r["dt"]), r["hr"]): r["n"] for r in rows.groupBy("dt", "hr").count().withColumnRenamed("count", "n").collect()}
    want = {}
    for e in events:
        dt, hr = hive_hour(e).split("/")
        key = (dt[3:], int(hr[3:]))
        want[key] = want.get(key, 0) + 1
    assert got == want and len(want) == 3


def test_streaming_parquet_hive_layout_new_bucket_and_in_use_files(spark, tmp_path):
    inp, out, cp = tmp_path / "final", tmp_path / "kpi", tmp_path / "cp"
    events = model_events(300, sim_eps=0.05)  # 09:30 .. ~11:10
    first_hours = [e for e in events if hive_hour(e) != "dt=2024-11-24/hr=11"]
    later = [e for e in events if hive_hour(e) == "dt=2024-11-24/hr=11"]
    assert first_hours and later
    write_final_files(str(inp), first_hours, fmt="parquet-typed", per_file=30, bucket_of=hive_hour)
    # In-use files: flumen's hidden folder and a `.`-prefixed name; a marker is no data either.
    hidden = parquet_rows("flume.txn", 0, 9000, later[:5], typed=True)
    os.makedirs(inp / "_flumen" / "tmp")
    write_parquet(str(inp / "_flumen" / "tmp" / final_name("flume.txn", 0, 9000, 9004, ".parquet")), hidden, True)
    write_parquet(str(inp / "dt=2024-11-24" / "hr=09" / ("." + final_name("flume.txn", 0, 9000, 9004, ".parquet"))),
                  hidden, True)
    (inp / "dt=2024-11-24" / "hr=09" / "_COMPLETE").write_text("")

    def run():
        q = kpi_job.start_query(spark, str(inp), str(out), str(cp), fmt="parquet", available_now=True,
                                output_mode="complete", console=False, max_files_per_trigger=3)
        assert q.awaitTermination(180), "availableNow query did not finish"
        assert q.exception() is None
        return sorted(tuple(r) for r in spark.read.parquet(str(out)).collect())

    assert run() == kpi_rows_of(spark, first_hours)
    # A new hour bucket appears: the next run takes its files once, and only those.
    write_final_files(str(tmp_path / "later"), later, fmt="parquet-typed", per_file=30, bucket_of=hive_hour,
                      prefix="later")
    os.rename(tmp_path / "later" / "dt=2024-11-24" / "hr=11", inp / "dt=2024-11-24" / "hr=11")
    assert run() == kpi_rows_of(spark, events)


def kpi_rows_of(spark, events):
    """The KPI table of `events` computed from in-memory rows (no file reader involved)."""
    df = spark.createDataFrame(events, schema=flumen_input.EVENT_SCHEMA)
    return sorted(tuple(r) for r in kpi_job.kpis(df).collect())
