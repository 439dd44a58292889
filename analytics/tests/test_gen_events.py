"""The generator's seeded model and delivery accounting (no Kafka broker needed)."""
import json
import statistics
from collections import Counter, defaultdict

import pytest

import gen_events
from gen_events import EVENT_TYPES, EventModel, encode

START = 1732442400000  # 2024-11-24T10:00:00Z


def test_same_seed_gives_identical_events():
    a = [encode(e) for e in EventModel(seed=7, cells=12, start_ms=START, max_skew_ms=500).events(3000)]
    b = [encode(e) for e in EventModel(seed=7, cells=12, start_ms=START, max_skew_ms=500).events(3000)]
    assert a == b
    c = [encode(e) for e in EventModel(seed=8, cells=12, start_ms=START, max_skew_ms=500).events(3000)]
    assert a != c
    # A prefix of a longer run equals a shorter run.
    assert [encode(e) for e in EventModel(seed=7, cells=12, start_ms=START, max_skew_ms=500).events(100)] == a[:100]


def test_keys_map_cells_consistently_and_fields_are_sane():
    model = EventModel(seed=3, cells=9, start_ms=START, sim_eps=50)
    events = list(model.events(5000))
    region_of = defaultdict(set)
    for e in events:
        key, value = encode(e)
        assert key == e["cell_id"].encode()
        assert json.loads(value) == e
        region_of[e["cell_id"]].add(e["region"])
        assert e["event_type"] in EVENT_TYPES
        assert len(e["subscriber"]) == 16 and int(e["subscriber"], 16) >= 0
        assert e["bytes_up"] >= 0 and e["bytes_down"] >= 0
        if e["event_type"] in ("SMS", "CALL_DROP"):
            assert e["setup_latency_ms"] is None
        else:
            assert e["setup_latency_ms"] > 0
        assert e["event_time_iso"].startswith("2024-11-24T")
    assert all(len(r) == 1 for r in region_of.values())
    assert len(region_of) == 9
    assert [e["seq"] for e in events] == list(range(5000))
    times = [e["event_time"] for e in events]
    assert times == sorted(times) and times[0] >= START
    # 5000 events at 50 simulated events/s span roughly 100 s of event time.
    assert 80_000 < times[-1] - START < 120_000
    # Every type occurs; drops are a minority of call attempts.
    types = Counter(e["event_type"] for e in events)
    assert set(types) == set(EVENT_TYPES)
    assert 0 < types["CALL_DROP"] < 0.3 * (types["CALL_DROP"] + types["CALL_SETUP"])
    # Latency model: per-region medians differ (west is slowest by construction).
    lat = defaultdict(list)
    for e in events:
        if e["event_type"] == "CALL_SETUP":
            lat[e["region"]].append(e["setup_latency_ms"])
    med = {r: statistics.median(v) for r, v in lat.items()}
    assert med["west"] > med["central"]


def test_skew_makes_events_out_of_order_but_deterministic():
    events = list(EventModel(seed=1, cells=4, start_ms=START, max_skew_ms=2000).events(2000))
    times = [e["event_time"] for e in events]
    assert times != sorted(times)
    assert min(times) >= START


def test_parse_time_ms():
    assert gen_events.parse_time_ms("2024-11-24T10:00:00Z") == START
    assert gen_events.parse_time_ms("2024-11-24T10:00:00") == START
    assert gen_events.parse_time_ms(str(START)) == START


class FakeMsg:
    def __init__(self, key, partition, offset):
        self._k, self._p, self._o = key, partition, offset

    def key(self):
        return self._k

    def partition(self):
        return self._p

    def offset(self):
        return self._o


class FakeProducer:
    """Stands in for confluent_kafka.Producer: partitions by a stable key hash."""
    fail_seq = None
    instances = []

    def __init__(self, conf):
        self.conf = conf
        self.pending = []
        self.offsets = Counter()
        FakeProducer.instances.append(self)

    def produce(self, topic, key, value, on_delivery):
        self.pending.append((key, value, on_delivery))

    def poll(self, timeout=0):
        served = 0
        for key, value, cb in self.pending:
            p = sum(key) % 3
            if json.loads(value)["seq"] == FakeProducer.fail_seq:
                cb("KafkaError{code=MSG_TIMED_OUT}", FakeMsg(key, p, -1))
            else:
                cb(None, FakeMsg(key, p, self.offsets[p]))
                self.offsets[p] += 1
            served += 1
        self.pending = []
        return served

    def flush(self, timeout=None):
        self.poll()
        return 0


@pytest.fixture
def fake_kafka(monkeypatch):
    import confluent_kafka
    FakeProducer.instances = []
    monkeypatch.setattr(confluent_kafka, "Producer", FakeProducer)
    return FakeProducer


def test_produce_report_counts_deliveries(fake_kafka, tmp_path, capsys):
    fake_kafka.fail_seq = None
    report_path = tmp_path / "r.json"
    rc = gen_events.main(["--count", "500", "--cells", "6", "--seed", "5", "--bootstrap", "x:1",
                          "--event-time-start", "2024-11-24T10:00:00Z", "--report", str(report_path)])
    assert rc == 0
    conf = fake_kafka.instances[0].conf
    assert conf["acks"] == "all" and conf["enable.idempotence"] is True
    rep = json.loads(report_path.read_text())
    expected_cells = Counter(e["cell_id"] for e in EventModel(seed=5, cells=6, start_ms=START).events(500))
    assert rep["per_cell"] == dict(expected_cells)
    assert rep["total"] == rep["delivered"] == 500 and rep["failed"] == 0
    assert sum(rep["per_partition"].values()) == 500
    assert rep["run_id"] == f"s5-t{START}"
    # each cell reported on exactly one partition, consistent with the fake's key hash
    assert rep["cell_partition"] == {c: sum(c.encode()) % 3 for c in expected_cells}
    assert json.loads(capsys.readouterr().out) == rep


def test_produce_fails_loudly_on_delivery_error(fake_kafka, tmp_path, capsys):
    fake_kafka.fail_seq = 17
    report_path = tmp_path / "r.json"
    rc = gen_events.main(["--count", "100", "--seed", "5", "--bootstrap", "x:1", "--report", str(report_path)])
    assert rc == 1
    rep = json.loads(report_path.read_text())
    assert rep["failed"] == 1 and rep["delivered"] == 99
    assert "FAILED" in capsys.readouterr().err
