#!/usr/bin/env python3
"""Seeded telecom event generator for the flumen demo.

Produces JSON events to a Kafka topic (default ``flume.txn``) with confluent-kafka,
keyed by cell id so that a cell always lands on the same partition. The event stream
is a pure function of (--seed, --cells, --count, --event-time-start, --sim-eps,
--max-skew-ms), so two runs with the same arguments produce byte-identical values.

The producer uses acks=all and enable.idempotence=true, flushes at the end and checks
every delivery report. It prints (and writes to --report) a JSON summary with totals
per partition (from the delivery reports), per cell and overall. It exits non-zero if
any delivery failed or is unaccounted for.

Event value (one JSON object, compact):
  seq              int, 0-based, unique within a run
  run_id           str, identifies the run (default: derived from seed and start time)
  event_time       int, epoch milliseconds (simulated clock)
  event_time_iso   str, UTC ISO-8601 with milliseconds
  cell_id          str, e.g. "cell-0007" (also the Kafka key)
  region           str
  subscriber       str, sha256(run-independent subscriber id) hex, first 16 chars
  event_type       CALL_SETUP | CALL_DROP | HANDOVER | DATA_SESSION | SMS
  bytes_up         int
  bytes_down       int
  setup_latency_ms float or null (null for SMS and CALL_DROP)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Dict, Iterator, List, Optional, Tuple

EVENT_TYPES = ("CALL_SETUP", "CALL_DROP", "HANDOVER", "DATA_SESSION", "SMS")
REGIONS = ("north", "south", "east", "west", "central")
# Median call-setup latency per region (ms); cells add their own lognormal bias.
REGION_MEDIAN_LATENCY_MS = {"north": 180.0, "south": 240.0, "east": 210.0, "west": 300.0, "central": 160.0}
# Mix of activity kinds. A "call attempt" becomes CALL_SETUP or CALL_DROP
# depending on the cell's drop probability.
ACTIVITY_WEIGHTS = (("CALL", 0.36), ("DATA_SESSION", 0.34), ("SMS", 0.16), ("HANDOVER", 0.14))


@dataclass(frozen=True)
class Cell:
    cell_id: str
    region: str
    weight: float  # relative traffic share (Zipf-like)
    latency_median_ms: float
    drop_prob: float


def iso_ms(epoch_ms: int) -> str:
    dt = datetime.fromtimestamp(epoch_ms / 1000.0, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def parse_time_ms(text: Optional[str]) -> int:
    """Accept epoch ms, or ISO-8601 (UTC if no offset given); None -> now."""
    if text is None or text == "now":
        return int(time.time() * 1000)
    if text.isdigit():
        return int(text)
    t = text.replace("Z", "+00:00")
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def subscriber_hash(sub_index: int) -> str:
    return hashlib.sha256(f"subscriber-{sub_index:07d}".encode()).hexdigest()[:16]


class EventModel:
    """Deterministic event model; no Kafka needed."""

    def __init__(self, seed: int, cells: int = 20, start_ms: int = 0, sim_eps: float = 100.0,
                 subscribers: int = 5000, max_skew_ms: int = 0, run_id: Optional[str] = None):
        if cells < 1:
            raise ValueError("cells must be >= 1")
        if sim_eps <= 0:
            raise ValueError("sim_eps must be > 0")
        self.seed = seed
        self.start_ms = start_ms
        self.sim_eps = sim_eps
        self.subscribers = subscribers
        self.max_skew_ms = max_skew_ms
        self.run_id = run_id or f"s{seed}-t{start_ms}"
        # Topology is derived from its own RNG so it depends only on (seed, cells).
        topo = random.Random(f"flumen-topology-{seed}")
        self.cells: List[Cell] = []
        for i in range(cells):
            region = REGIONS[i % len(REGIONS)]
            bias = math.exp(topo.gauss(0.0, 0.25))  # per-cell latency bias
            # Most cells drop 1-3% of calls; a few "bad" cells drop far more.
            drop = topo.betavariate(2.0, 80.0)
            if topo.random() < 0.15:
                drop += topo.uniform(0.05, 0.15)
            self.cells.append(Cell(
                cell_id=f"cell-{i:04d}",
                region=region,
                weight=1.0 / (i + 1) ** 0.8,
                latency_median_ms=REGION_MEDIAN_LATENCY_MS[region] * bias,
                drop_prob=min(drop, 0.5),
            ))
        self._cell_weights = [c.weight for c in self.cells]
        self._act_names = [a for a, _ in ACTIVITY_WEIGHTS]
        self._act_weights = [w for _, w in ACTIVITY_WEIGHTS]

    def events(self, count: int) -> Iterator[dict]:
        rng = random.Random(f"flumen-events-{self.seed}")
        clock = float(self.start_ms)
        mean_gap_ms = 1000.0 / self.sim_eps
        for seq in range(count):
            clock += rng.expovariate(1.0 / mean_gap_ms)
            skew = rng.randint(0, self.max_skew_ms) if self.max_skew_ms > 0 else 0
            event_time = max(self.start_ms, int(clock) - skew)
            cell = rng.choices(self.cells, weights=self._cell_weights)[0]
            activity = rng.choices(self._act_names, weights=self._act_weights)[0]
            sub = subscriber_hash(rng.randrange(self.subscribers))
            latency: Optional[float] = None
            up = down = 0
            if activity == "CALL":
                etype = "CALL_DROP" if rng.random() < cell.drop_prob else "CALL_SETUP"
                # Drops draw a latency too (discarded) so the RNG sequence is simpler to follow.
                lat = rng.lognormvariate(math.log(cell.latency_median_ms), 0.35)
                if etype == "CALL_SETUP":
                    latency = round(lat, 1)
                    up = rng.randint(800, 2400)  # signalling
                    down = rng.randint(800, 2400)
            elif activity == "DATA_SESSION":
                etype = "DATA_SESSION"
                latency = round(rng.lognormvariate(math.log(cell.latency_median_ms * 0.4), 0.5), 1)
                down = int(rng.lognormvariate(math.log(1.5e6), 1.2))
                up = int(down * rng.uniform(0.05, 0.3))
            elif activity == "SMS":
                etype = "SMS"
                up = rng.randint(40, 160)
                down = 0
            else:
                etype = "HANDOVER"
                latency = round(rng.lognormvariate(math.log(45.0), 0.4), 1)
            yield {
                "seq": seq,
                "run_id": self.run_id,
                "event_time": event_time,
                "event_time_iso": iso_ms(event_time),
                "cell_id": cell.cell_id,
                "region": cell.region,
                "subscriber": sub,
                "event_type": etype,
                "bytes_up": up,
                "bytes_down": down,
                "setup_latency_ms": latency,
            }


def encode(event: dict) -> Tuple[bytes, bytes]:
    """Kafka (key, value) for an event: key = cell id, value = compact JSON."""
    return event["cell_id"].encode("utf-8"), json.dumps(event, separators=(",", ":")).encode("utf-8")


class DeliveryTracker:
    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.errors: Counter = Counter()
        self.per_partition: Counter = Counter()
        self.offsets: Dict[int, List[int]] = {}  # partition -> [min, max]
        self.cell_partitions: Dict[str, set] = {}

    def callback(self, err, msg) -> None:
        if err is not None:
            self.failed += 1
            self.errors[str(err)] += 1
            return
        p, off = msg.partition(), msg.offset()
        self.ok += 1
        self.per_partition[p] += 1
        rng = self.offsets.setdefault(p, [off, off])
        rng[0] = min(rng[0], off)
        rng[1] = max(rng[1], off)
        key = msg.key().decode("utf-8") if msg.key() is not None else None
        self.cell_partitions.setdefault(key, set()).add(p)


def build_producer_config(bootstrap: str, delivery_timeout_ms: int) -> dict:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        # Same key -> partition mapping as the Java client.
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "message.timeout.ms": delivery_timeout_ms,
        "client.id": "flumen-gen-events",
    }


def produce(args, model: EventModel) -> dict:
    from confluent_kafka import KafkaException, Producer  # imported lazily: model tests need no Kafka

    tracker = DeliveryTracker()
    producer = Producer(build_producer_config(args.bootstrap, args.delivery_timeout_ms))
    per_cell: Counter = Counter()
    per_type: Counter = Counter()
    tmin, tmax = None, None
    t0 = time.monotonic()
    for i, ev in enumerate(model.events(args.count)):
        if args.rate > 0:
            due = t0 + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                producer.poll(0)
                time.sleep(delay)
        key, value = encode(ev)
        while True:
            try:
                producer.produce(args.topic, key=key, value=value, on_delivery=tracker.callback)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: serve callbacks and retry
            except KafkaException as e:
                raise SystemExit(f"gen_events: produce failed fatally at seq {ev['seq']}: {e}")
        producer.poll(0)
        per_cell[ev["cell_id"]] += 1
        per_type[ev["event_type"]] += 1
        tmin = ev["event_time"] if tmin is None else min(tmin, ev["event_time"])
        tmax = ev["event_time"] if tmax is None else max(tmax, ev["event_time"])
        if args.progress and (i + 1) % args.progress == 0:
            print(f"gen_events: queued {i + 1}/{args.count}, delivered {tracker.ok}", file=sys.stderr)
    remaining = producer.flush(args.flush_timeout)
    elapsed = time.monotonic() - t0
    report = {
        "topic": args.topic,
        "run_id": model.run_id,
        "seed": args.seed,
        "cells": len(model.cells),
        "event_time_start": model.start_ms,
        "event_time_min": tmin,
        "event_time_max": tmax,
        "total": args.count,
        "delivered": tracker.ok,
        "failed": tracker.failed,
        "undelivered_after_flush": remaining,
        "delivery_errors": dict(tracker.errors),
        "per_partition": {str(p): n for p, n in sorted(tracker.per_partition.items())},
        "partition_offsets": {str(p): {"first": r[0], "last": r[1]} for p, r in sorted(tracker.offsets.items())},
        "per_cell": dict(sorted(per_cell.items())),
        "per_event_type": dict(sorted(per_type.items())),
        "cell_partition": {c: sorted(ps)[0] for c, ps in sorted(tracker.cell_partitions.items()) if len(ps) == 1},
        "cells_on_several_partitions": sorted(c for c, ps in tracker.cell_partitions.items() if len(ps) > 1),
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(args.count / elapsed, 1) if elapsed > 0 else None,
    }
    return report


def model_from_args(args) -> EventModel:
    start = parse_time_ms(args.event_time_start)
    sim_eps = args.sim_eps if args.sim_eps else (args.rate if args.rate > 0 else 100.0)
    return EventModel(seed=args.seed, cells=args.cells, start_ms=start, sim_eps=sim_eps,
                      subscribers=args.subscribers, max_skew_ms=args.max_skew_ms, run_id=args.run_id)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
                   help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP)")
    p.add_argument("--topic", default="flume.txn")
    p.add_argument("--count", type=int, default=10000, help="total events")
    p.add_argument("--rate", type=float, default=0.0, help="events/s wall clock; 0 = as fast as possible")
    p.add_argument("--cells", type=int, default=20)
    p.add_argument("--subscribers", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--event-time-start", default=None,
                   help="simulated clock start: epoch ms or ISO-8601 (UTC); default now")
    p.add_argument("--sim-eps", type=float, default=None,
                   help="simulated events per second of event time (default: --rate, or 100 if rate=0)")
    p.add_argument("--max-skew-ms", type=int, default=0,
                   help="max random lateness subtracted from event time (out-of-order events)")
    p.add_argument("--run-id", default=None, help="run id stored in each event (default s<seed>-t<start>)")
    p.add_argument("--report", default=None, help="write the JSON summary to this file too")
    p.add_argument("--delivery-timeout-ms", type=int, default=120000)
    p.add_argument("--flush-timeout", type=float, default=180.0, help="seconds to wait in the final flush")
    p.add_argument("--progress", type=int, default=0, help="print progress every N events (stderr)")
    p.add_argument("--dry-run", action="store_true",
                   help="print events as JSON lines to stdout instead of producing")
    args = p.parse_args(argv)
    if args.count < 0:
        p.error("--count must be >= 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    model = model_from_args(args)
    if args.dry_run:
        for ev in model.events(args.count):
            sys.stdout.write(encode(ev)[1].decode() + "\n")
        return 0
    report = produce(args, model)
    text = json.dumps(report, indent=2, sort_keys=False)
    print(text)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text + "\n")
    problems = []
    if report["failed"]:
        problems.append(f"{report['failed']} delivery failures: {report['delivery_errors']}")
    if report["undelivered_after_flush"]:
        problems.append(f"{report['undelivered_after_flush']} messages still queued after flush")
    if report["delivered"] != report["total"]:
        problems.append(f"delivered {report['delivered']} != produced {report['total']}")
    if report["cells_on_several_partitions"]:
        problems.append(f"cells on several partitions: {report['cells_on_several_partitions']}")
    if problems:
        for pr in problems:
            print(f"gen_events: FAILED: {pr}", file=sys.stderr)
        return 1
    print(f"gen_events: OK {report['delivered']} events delivered to {args.topic} "
          f"in {report['elapsed_s']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
