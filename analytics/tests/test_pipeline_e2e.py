"""End to end against the real testbed: gen_events -> Kafka -> flumen -> HDFS -> Spark.

flumen is killed with SIGKILL once while the generator is still producing and then restarted.
Afterwards Spark (the KPI job, availableNow, and count_check) must count exactly the events the
generator delivered: in total, per cell and per partition, with no duplicate.

Needs the testbed and a flumen binary. Without them the test FAILS (it never skips):
    eval "$(scripts/testbed up)"     # exports KAFKA_BOOTSTRAP, HDFS_URL, HADOOP_CONF_DIR, ...
    cargo build                      # or FLUMEN_BIN=/path/to/flumen
FLUMEN_BIN defaults to $CARGO_TARGET_DIR (else ~/.cache/flumen/target) /debug/flumen, then
/release/flumen. Each run uses its own topic, consumer group and HDFS folder
(/user/flumen/e2e/<run>/flume_kafka), so reruns against one testbed do not collide; the topic is
deleted at the end, the HDFS folder is left for inspection.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from urllib.parse import urlparse

import pytest

ANALYTICS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(ANALYTICS)

EVENTS = 30_000
RATE = 2_000  # events/s: the generator runs ~15 s, long enough to crash flumen in the middle
PARTITIONS = 3
CELLS = 20
SEED = 7
EVENT_TIME_START = "2024-11-24T10:00:00Z"
LAG_TIMEOUT_S = 120
SPARK_TIMEOUT_S = 240

HOWTO = """\
This end-to-end test runs against the local testbed and a flumen binary. Start them with:
    eval "$(scripts/testbed up)"     # from the repo root; exports KAFKA_BOOTSTRAP and HDFS_URL
    cargo build                      # or: export FLUMEN_BIN=/path/to/flumen
and run the test again in that shell."""


def _fail_setup(msg):
    pytest.fail(f"{msg}\n\n{HOWTO}", pytrace=False)


def _flumen_bin():
    explicit = os.environ.get("FLUMEN_BIN")
    if explicit:
        if not (os.path.isfile(explicit) and os.access(explicit, os.X_OK)):
            _fail_setup(f"FLUMEN_BIN={explicit} is not an executable file.")
        return explicit
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/flumen/target")
    candidates = [os.path.join(target, kind, "flumen") for kind in ("debug", "release")]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    _fail_setup(f"no flumen binary: FLUMEN_BIN is unset and none of {candidates} exists.")


def _endpoints():
    kafka, hdfs = os.environ.get("KAFKA_BOOTSTRAP"), os.environ.get("HDFS_URL")
    missing = [n for n, v in (("KAFKA_BOOTSTRAP", kafka), ("HDFS_URL", hdfs)) if not v]
    if missing:
        _fail_setup(f"environment variable(s) {', '.join(missing)} not set.")
    binary = _flumen_bin()
    from confluent_kafka.admin import AdminClient

    # log_level 2: no librdkafka "Connect ... failed" line every few ms while Kafka is down
    admin = AdminClient({"bootstrap.servers": kafka, "log_level": 2})
    problem = None  # pytest.fail outside the except blocks: no chained traceback
    try:
        admin.list_topics(timeout=10)
    except Exception as e:  # noqa: BLE001 - any failure means "not reachable"
        problem = f"Kafka at KAFKA_BOOTSTRAP={kafka} does not answer: {e}"
    if problem:
        _fail_setup(problem)
    u = urlparse(hdfs)
    if u.scheme != "hdfs" or not u.hostname:
        _fail_setup(f"HDFS_URL={hdfs} is not an hdfs://host:port URL.")
    try:
        socket.create_connection((u.hostname, u.port or 8020), timeout=5).close()
    except OSError as e:
        problem = f"HDFS NameNode at HDFS_URL={hdfs} does not answer: {e}"
    if problem:
        _fail_setup(problem)
    return kafka, hdfs, binary, admin


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_env():
    env = dict(os.environ)
    env.pop("FAILPOINTS", None)  # a failpoints build must not inherit a crash scenario
    env.setdefault("RUST_LOG", "info,rdkafka=warn")
    return env


class Relay:
    """`flumen run` in the background, logging to <dir>/flumen-<n>.log."""

    def __init__(self, binary, config, log_dir, metrics_addr, n):
        self.metrics_addr = metrics_addr
        self.log_path = os.path.join(log_dir, f"flumen-{n}.log")
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([binary, "run", "--config", config], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=log, env=_child_env())

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"

    def _get(self, path):
        with urllib.request.urlopen(f"http://{self.metrics_addr}{path}", timeout=2) as r:
            return r.read().decode()

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"flumen exited with {self.proc.returncode} during startup:\n{self.log_tail()}")
            try:
                return json.loads(self._get("/health"))
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"flumen /health did not answer within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def metric(self, name):
        try:
            text = self._get("/metrics")
        except OSError:
            return 0
        total = 0.0
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 2 and (parts[0] == name or parts[0].startswith(name + "{")):
                total += float(parts[1])
        return total

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self, timeout=40):
        """SIGTERM, wait; SIGKILL after `timeout` s. Returns the exit code (None if it was killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            return None


def _create_topic(admin, topic):
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    deadline = time.monotonic() + 30
    while True:
        md = admin.list_topics(topic, timeout=10).topics.get(topic)
        if md is not None and md.error is None and len(md.partitions) == PARTITIONS and \
                all(p.leader >= 0 for p in md.partitions.values()):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"topic {topic} has no leaders for its {PARTITIONS} partitions after 30 s")
        time.sleep(0.2)


def _write_config(path, kafka, hdfs, topic, group, hdfs_path, channel, metrics_addr):
    with open(path, "w") as f:
        f.write(f"""shutdown_timeout_ms = 30000
[kafka]
bootstrap_servers = "{kafka}"
topics = ["{topic}"]
group_id = "{group}"
session_timeout_ms = 6000
batch_records_max = 1000
batch_duration_ms = 200
[kafka.properties]
"heartbeat.interval.ms" = "1000"
[channel]
dir = "{channel}"
segment_bytes_max = 16777216
capacity_bytes_max = 1073741824
resume_bytes = 805306368
disk_free_bytes_min = 104857600
[hdfs]
url = "{hdfs}"
path = "{hdfs_path}"
file_prefix = "test-events"
format = "jsonl"
roll_records_max = 5000
roll_interval_s = 3
retry_backoff_max_ms = 2000
[metrics]
listen = "{metrics_addr}"
""")


def _offsets(binary, config):
    r = subprocess.run([binary, "offsets", "--config", config, "--json"], capture_output=True,
                       text=True, timeout=60, env=_child_env())
    if r.returncode != 0:
        return None, r.stderr
    try:
        return json.loads(r.stdout), r.stderr
    except ValueError:
        return None, r.stdout


def _wait_caught_up(binary, config, topic, report, relay):
    """Until every partition has lag_hdfs 0 and Kafka holds what the generator delivered."""
    want = {int(p): n for p, n in report["per_partition"].items()}
    deadline = time.monotonic() + LAG_TIMEOUT_S
    rows = None
    while True:
        rows, err = _offsets(binary, config)
        if rows is not None:
            mine = {r["partition"]: r for r in rows if r["topic"] == topic}
            if len(mine) == PARTITIONS and all(
                    r["lag_hdfs"] == 0 and r["kafka_log_end"] is not None and r["kafka_log_start"] is not None
                    and r["kafka_log_end"] - r["kafka_log_start"] == want.get(p, 0)
                    for p, r in mine.items()):
                return mine
        if relay.proc.poll() is not None:
            pytest.fail(f"flumen exited with {relay.proc.returncode} while catching up:\n{relay.log_tail()}")
        if time.monotonic() > deadline:
            pytest.fail(f"HDFS did not catch up with Kafka within {LAG_TIMEOUT_S} s; last offsets:\n"
                        f"{json.dumps(rows, indent=1)}\n{err}\nflumen log:\n{relay.log_tail()}")
        time.sleep(1)


def test_kill9_mid_stream_then_spark_counts_exactly(tmp_path, request):
    kafka, hdfs, binary, admin = _endpoints()
    run = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    topic = f"e2e.{run}"
    group = f"flumen-e2e-{run}"
    hdfs_path = f"/user/flumen/e2e/{run}/flume_kafka"
    metrics_addr = f"127.0.0.1:{_free_port()}"
    config = str(tmp_path / "flumen.toml")
    report_path = str(tmp_path / "gen-report.json")
    _write_config(config, kafka, hdfs, topic, group, hdfs_path, tmp_path / "channel", metrics_addr)

    relays, gen = [], None
    _create_topic(admin, topic)
    try:
        chk = subprocess.run([binary, "check", "--config", config], capture_output=True, text=True,
                             timeout=90, env=_child_env())
        if chk.returncode != 0:
            _fail_setup(f"`flumen check` cannot reach Kafka/HDFS ({kafka}, {hdfs}):\n{chk.stdout}{chk.stderr}")

        relays.append(Relay(binary, config, tmp_path, metrics_addr, 1))
        relays[-1].wait_ready()
        gen_log = open(tmp_path / "gen.log", "wb")
        gen = subprocess.Popen(
            [sys.executable, os.path.join(ANALYTICS, "gen_events.py"), "--bootstrap", kafka,
             "--topic", topic, "--count", str(EVENTS), "--rate", str(RATE), "--cells", str(CELLS),
             "--seed", str(SEED), "--event-time-start", EVENT_TIME_START, "--sim-eps", "200",
             "--run-id", f"e2e-{run}", "--report", report_path],
            stdout=gen_log, stderr=subprocess.STDOUT, env=_child_env())
        gen_log.close()

        # Crash once committed files exist and the generator is still producing: committed
        # files, open in-use files and channel data not yet in HDFS are all left behind.
        first = relays[-1]
        deadline = time.monotonic() + 60
        while first.metric("flumen_files_committed_total") < PARTITIONS and gen.poll() is None:
            assert first.proc.poll() is None, f"flumen died on its own:\n{first.log_tail()}"
            assert time.monotonic() < deadline, f"flumen committed no file within 60 s:\n{first.log_tail()}"
            time.sleep(0.2)
        assert gen.poll() is None, (
            "the generator finished before flumen committed its first files, so the kill -9 would not "
            f"be mid-stream (machine overloaded?); flumen log:\n{first.log_tail()}")
        committed_before = first.metric("flumen_records_committed_total")
        first.kill9()
        relays.append(Relay(binary, config, tmp_path, metrics_addr, 2))
        relays[-1].wait_ready()

        try:
            gen_rc = gen.wait(timeout=180)
        except subprocess.TimeoutExpired:
            pytest.fail("the generator did not finish within 180 s")
        gen_out = (tmp_path / "gen.log").read_text(errors="replace")
        assert gen_rc == 0, f"gen_events failed ({gen_rc}):\n{gen_out[-3000:]}"
        with open(report_path) as f:
            report = json.load(f)
        assert report["total"] == report["delivered"] == EVENTS, report
        assert len(report["per_partition"]) == PARTITIONS, report["per_partition"]
        assert 0 < committed_before < EVENTS

        _wait_caught_up(binary, config, topic, report, relays[-1])
        rc = relays[-1].stop()
        assert rc == 0, f"flumen exited {rc} after SIGTERM (expected a graceful 0):\n{relays[-1].log_tail()}"
    finally:
        if gen is not None and gen.poll() is None:
            gen.kill()
            gen.wait(timeout=30)
        for r in relays:
            r.stop()
        try:
            admin.delete_topics([topic], operation_timeout=30)[topic].result(60)
        except Exception:  # noqa: BLE001 - best effort
            pass

    # Spark: the KPI job over the final files, then the exactly-once check.
    import count_check
    import kpi_job
    from pyspark.sql import functions as F

    spark = request.getfixturevalue("spark")
    source = hdfs.rstrip("/") + hdfs_path
    # file:// URIs: with HADOOP_CONF_DIR from the testbed, scheme-less paths would mean HDFS.
    out, ckpt = (tmp_path / "kpi").as_uri(), (tmp_path / "kpi-checkpoint").as_uri()
    q = kpi_job.start_query(spark, source, out, ckpt, fmt="jsonl", available_now=True, console=False)
    assert q.awaitTermination(SPARK_TIMEOUT_S), f"the KPI job did not finish within {SPARK_TIMEOUT_S} s"
    assert q.exception() is None, f"KPI job failed: {q.exception()}"
    kpi = spark.read.parquet(out)
    spark_cells = {r["cell_id"]: r["n"] for r in kpi.groupBy("cell_id").agg(F.sum("events").alias("n")).collect()}
    spark_total = sum(spark_cells.values())
    print(f"\nKPI job: {spark_total} events in {kpi.count()} KPI rows; generator delivered {report['delivered']}")
    assert spark_total == EVENTS, f"Spark counted {spark_total} events, the generator delivered {EVENTS}"
    assert spark_cells == report["per_cell"], (
        "per-cell counts differ (cell: generated, Spark): "
        + str({c: (report["per_cell"].get(c), spark_cells.get(c)) for c in set(report["per_cell"]) | set(spark_cells)
               if report["per_cell"].get(c) != spark_cells.get(c)}))

    stats = count_check.collect_stats(spark, source, "jsonl", None)
    verdict = count_check.evaluate(stats, report, "jsonl", only_run=False)
    print(verdict["text"])
    assert verdict["ok"], verdict["text"]
    assert verdict["total_found"] == EVENTS and verdict["duplicates"] == 0
