"""KPI logic (batch, hand-computed answers) and the streaming job over local files."""
import json
import os
import time
from datetime import datetime, timezone

import pytest

import kpi_job
from flumen_testutil import final_name, jsonl_line, text_line, write_final_files

T0 = int(datetime(2024, 11, 24, 10, 0, tzinfo=timezone.utc).timestamp() * 1000)  # window A start
MIN = 60_000
SEC = 1000

_seq = iter(range(10**6))


def ev(cell, region, etype, t, lat=None, up=0, down=0):
    return {"seq": next(_seq), "run_id": "r-test", "event_time": t, "cell_id": cell, "region": region,
            "subscriber": "abcd", "event_type": etype, "bytes_up": up, "bytes_down": down,
            "setup_latency_ms": lat}


def hand_made_events():
    e = []
    # cell-A, window A [10:00, 10:01): 4 setups (100..400 ms), 1 drop, 2 handovers, 1 data session.
    for i, lat in enumerate([300.0, 100.0, 400.0, 200.0]):
        e.append(ev("cell-A", "north", "CALL_SETUP", T0 + i * SEC, lat, 10, 20))
    e.append(ev("cell-A", "north", "CALL_DROP", T0 + 5 * SEC))
    e.append(ev("cell-A", "north", "HANDOVER", T0 + 6 * SEC, 50.0))
    e.append(ev("cell-A", "north", "HANDOVER", T0 + 7 * SEC, 55.0))
    e.append(ev("cell-A", "north", "DATA_SESSION", T0 + 8 * SEC, 30.0, 1000, 5000))
    # cell-A, window B [10:01, 10:02): 20 setups with latencies 10..200 (shuffled), 1 SMS.
    lats = [float(10 * k) for k in range(1, 21)]
    lats = lats[7:] + lats[:7]
    for i, lat in enumerate(lats):
        e.append(ev("cell-A", "north", "CALL_SETUP", T0 + MIN + i * SEC, lat))
    e.append(ev("cell-A", "north", "SMS", T0 + MIN + 30 * SEC, None, 100, 0))
    # cell-B, window A: 3 SMS only (one with a null bytes_down) -> no attempts.
    e.append(ev("cell-B", "south", "SMS", T0 + 1 * SEC, None, 50, 0))
    e.append(ev("cell-B", "south", "SMS", T0 + 2 * SEC, None, 50, 0))
    s = ev("cell-B", "south", "SMS", T0 + 3 * SEC, None, 50, 0)
    s["bytes_down"] = None
    e.append(s)
    # cell-B, window B: 2 drops + 2 setups (500, 700 ms).
    e.append(ev("cell-B", "south", "CALL_DROP", T0 + MIN + 1 * SEC))
    e.append(ev("cell-B", "south", "CALL_DROP", T0 + MIN + 2 * SEC))
    e.append(ev("cell-B", "south", "CALL_SETUP", T0 + MIN + 3 * SEC, 700.0, 1, 1))
    e.append(ev("cell-B", "south", "CALL_SETUP", T0 + MIN + 4 * SEC, 500.0, 1, 1))
    # cell-C: boundary events. 10:00:59.999 -> window A; 10:01:00.000 -> window B.
    e.append(ev("cell-C", "east", "HANDOVER", T0 + MIN - 1, 40.0))
    e.append(ev("cell-C", "east", "DATA_SESSION", T0 + MIN, 20.0, 1, 2))
    e.append(ev("cell-C", "east", "DATA_SESSION", T0 + MIN + 30 * SEC, 25.0, 3, 4))
    return e


# (cell, window index) -> expected KPI row values, computed by hand from the events above.
EXPECTED = {
    ("cell-A", 0): dict(region="north", events=8, call_setups=4, call_drops=1, drop_rate=0.2,
                        p95_setup_latency_ms=400.0, bytes_up=1040, bytes_down=5080, total_bytes=6120,
                        handovers=2, data_sessions=1, sms=0),
    ("cell-A", 1): dict(region="north", events=21, call_setups=20, call_drops=0, drop_rate=0.0,
                        p95_setup_latency_ms=190.0, bytes_up=100, bytes_down=0, total_bytes=100,
                        handovers=0, data_sessions=0, sms=1),
    ("cell-B", 0): dict(region="south", events=3, call_setups=0, call_drops=0, drop_rate=None,
                        p95_setup_latency_ms=None, bytes_up=150, bytes_down=0, total_bytes=150,
                        handovers=0, data_sessions=0, sms=3),
    ("cell-B", 1): dict(region="south", events=4, call_setups=2, call_drops=2, drop_rate=0.5,
                        p95_setup_latency_ms=700.0, bytes_up=2, bytes_down=2, total_bytes=4,
                        handovers=0, data_sessions=0, sms=0),
    ("cell-C", 0): dict(region="east", events=1, call_setups=0, call_drops=0, drop_rate=None,
                        p95_setup_latency_ms=None, bytes_up=0, bytes_down=0, total_bytes=0,
                        handovers=1, data_sessions=0, sms=0),
    ("cell-C", 1): dict(region="east", events=2, call_setups=0, call_drops=0, drop_rate=None,
                        p95_setup_latency_ms=None, bytes_up=4, bytes_down=6, total_bytes=10,
                        handovers=0, data_sessions=2, sms=0),
}


def rows_by_key(rows):
    out = {}
    for r in rows:
        d = r.asDict()
        start_ms = int(d["window_start"].replace(tzinfo=timezone.utc).timestamp() * 1000)
        idx = (start_ms - T0) // MIN
        assert (d["cell_id"], idx) not in out, "duplicate KPI row"
        end_ms = int(d["window_end"].replace(tzinfo=timezone.utc).timestamp() * 1000)
        assert end_ms - start_ms == MIN
        out[(d["cell_id"], idx)] = d
    return out


def assert_rows_match(got, expected):
    assert set(got) == set(expected)
    for key, exp in expected.items():
        for col, val in exp.items():
            g = got[key][col]
            if isinstance(val, float):
                assert g == pytest.approx(val), (key, col, g, val)
            else:
                assert g == val, (key, col, g, val)


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_kpis_batch_known_answers(spark, fmt):
    events = hand_made_events()
    if fmt == "jsonl":
        lines = [jsonl_line("flume.txn", 0, i, e) for i, e in enumerate(events)]
    else:
        lines = [text_line(e) for e in events]
    lines.append("this is not json")  # a malformed line is dropped, not counted
    df = spark.createDataFrame([(l,) for l in lines], "value string")
    parsed = kpi_job.parse_lines(df, fmt)
    assert parsed.count() == len(events)
    got = rows_by_key(kpi_job.kpis(parsed).collect())
    assert_rows_match(got, EXPECTED)
    assert sum(r["events"] for r in got.values()) == len(events)


def test_jsonl_without_utf8_value_is_skipped(spark):
    rec = {"topic": "flume.txn", "partition": 0, "offset": 1, "timestamp": 1, "key": None,
           "headers": [], "value_base64": "/w=="}
    good = jsonl_line("flume.txn", 0, 2, ev("cell-A", "north", "SMS", T0))
    df = spark.createDataFrame([(json.dumps(rec),), (good,)], "value string")
    out = kpi_job.parse_lines(df, "jsonl").collect()
    assert [r["cell_id"] for r in out] == ["cell-A"]


def _write(path, lines, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def _run_available_now(spark, inp, out, cp, fmt, mode, **kw):
    q = kpi_job.start_query(spark, str(inp), str(out), str(cp), fmt=fmt, available_now=True,
                            output_mode=mode, console=False, **kw)
    assert q.awaitTermination(180), "availableNow query did not finish"
    assert q.exception() is None
    return spark.read.parquet(str(out))


@pytest.mark.parametrize("fmt", ["jsonl", "text"])
def test_streaming_available_now_never_reads_in_use_files(spark, tmp_path, fmt):
    inp, out, cp = tmp_path / "final", tmp_path / "kpi", tmp_path / "cp"
    events = hand_made_events()
    ext = ".jsonl" if fmt == "jsonl" else ".txt"
    paths, _, _ = write_final_files(str(inp), events, fmt=fmt, partitions=2, per_file=10)
    assert len(paths) > 2

    def lines_for(cell, n, first):
        evs = [ev(cell, "west", "CALL_SETUP", T0 + i * SEC, 999.0, 7, 7) for i in range(n)]
        return [jsonl_line("flume.txn", 1, first + i, e) if fmt == "jsonl" else text_line(e)
                for i, e in enumerate(evs)]

    in_use = final_name("flume.txn", 1, 9000, 9004, ext)
    _write(str(inp / "_tmp" / in_use), lines_for("cell-INUSE", 5, 9000))       # flumen's in-use folder
    _write(str(inp / ("_" + in_use)), lines_for("cell-UNDERSCORE", 5, 9100))    # `_` prefixed file
    _write(str(inp / ("." + in_use)), lines_for("cell-DOT", 5, 9200))           # `.` prefixed file
    _write(str(inp / (in_use + "._COPYING_")), lines_for("cell-COPYING", 5, 9300))
    _write(str(inp / ("in-progress" + ext + ".tmp")), lines_for("cell-NONFINAL", 5, 9400))  # glob filter

    res = _run_available_now(spark, inp, out, cp, fmt, "complete", max_files_per_trigger=2)
    got = rows_by_key(res.collect())
    cells = {k[0] for k in got}
    assert cells == {"cell-A", "cell-B", "cell-C"}
    assert sum(r["events"] for r in got.values()) == len(events)
    assert_rows_match(got, EXPECTED)

    # The in-use file is committed by an atomic rename: the next run picks it up exactly once.
    os.rename(inp / "_tmp" / in_use, inp / in_use)
    res2 = _run_available_now(spark, inp, out, cp, fmt, "complete", max_files_per_trigger=2)
    got2 = rows_by_key(res2.collect())
    assert {k[0] for k in got2} == {"cell-A", "cell-B", "cell-C", "cell-INUSE"}
    assert got2[("cell-INUSE", 0)]["events"] == 5
    assert sum(r["events"] for r in got2.values()) == len(events) + 5


def test_streaming_append_mode_watermark_drops_late_event(spark, tmp_path):
    inp, out, cp = tmp_path / "final", tmp_path / "kpi", tmp_path / "cp"
    now = time.time()
    batches = [
        # batch 0: max event time 10:05:30 -> watermark 10:04:30 from batch 1 on
        [ev("cell-A", "north", "CALL_SETUP", T0 + 10 * SEC, 100.0),
         ev("cell-A", "north", "CALL_SETUP", T0 + 5 * MIN + 30 * SEC, 200.0)],
        # batch 1: max 10:07:00 -> watermark 10:06:00
        [ev("cell-A", "north", "CALL_SETUP", T0 + 7 * MIN, 400.0)],
        # batch 2: 10:01:10 is older than the watermark. Spark filters late input with the
        # previous batch's watermark (10:04:30 here), so it is dropped.
        [ev("cell-A", "north", "CALL_SETUP", T0 + MIN + 10 * SEC, 300.0)],
    ]
    off = 0
    for i, evs in enumerate(batches):
        _write(str(inp / final_name("flume.txn", 0, off, off + len(evs) - 1, ".jsonl")),
               [jsonl_line("flume.txn", 0, off + j, e) for j, e in enumerate(evs)], mtime=now - 100 + 10 * i)
        off += len(evs)
    q = kpi_job.start_query(spark, str(inp), str(out), str(cp), fmt="jsonl", available_now=True,
                            output_mode="append", console=False, watermark="1 minute",
                            max_files_per_trigger=1)
    assert q.awaitTermination(180)
    assert q.exception() is None
    dropped = sum(op.get("numRowsDroppedByWatermark", 0)
                  for p in q.recentProgress for op in p.get("stateOperators", []))
    assert dropped == 1
    res = spark.read.parquet(str(out))
    got = rows_by_key(res.collect())
    # Emitted: windows closed by the final watermark (10:06:00). Not emitted: the late event's
    # window (dropped) and the still-open 10:07 window.
    assert set(got) == {("cell-A", 0), ("cell-A", 5)}
    assert got[("cell-A", 0)]["events"] == 1
    assert got[("cell-A", 5)]["p95_setup_latency_ms"] == 200.0
    assert "batch_id" in res.columns
