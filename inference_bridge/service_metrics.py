"""Services' request metrics: counters, latency reservoirs, a series by minute, Prometheus text."""

from __future__ import annotations

import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

# latency histogram bounds, seconds (Prometheus' default buckets, finer below 10 ms)
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
RESERVOIR = 2048  # latencies kept per predictor for its percentiles
MINUTE_RESERVOIR = 256  # latencies kept per minute of the series
SERIES_MINUTES = 60


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0..100) of values (nearest rank); None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(q / 100 * len(ordered)) - 1)
    return ordered[rank]


class Reservoir:
    """A uniform sample of at most `size` values of a stream (Vitter's algorithm R)."""

    def __init__(self, size: int = RESERVOIR):
        self.size = size
        self.values: list[float] = []
        self.seen = 0

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        slot = random.randrange(self.seen)
        if slot < self.size:
            self.values[slot] = value


@dataclass
class Minute:
    """One minute of a service's requests."""

    start: int  # epoch seconds of the minute's start
    requests: int = 0
    errors: int = 0
    latencies: Reservoir = field(default_factory=lambda: Reservoir(MINUTE_RESERVOIR))


@dataclass
class PredictorMetrics:
    """Requests to one predictor of a service."""

    requests: int = 0
    errors: int = 0  # 5xx answers and replicas that could not be reached
    in_flight: int = 0
    latency_sum: float = 0.0  # seconds
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    reservoir: Reservoir = field(default_factory=Reservoir)

    def observe(self, seconds: float, error: bool) -> None:
        self.requests += 1
        if error:
            self.errors += 1
        self.latency_sum += seconds
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
                break
        self.reservoir.add(seconds * 1000)

    def model(self) -> dict:
        values = self.reservoir.values
        return {
            "requests": self.requests,
            "errors": self.errors,
            "p50_ms": _round(percentile(values, 50)),
            "p95_ms": _round(percentile(values, 95)),
            "p99_ms": _round(percentile(values, 99)),
            "in_flight": self.in_flight,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class ServiceMetrics:
    """The metrics of one service: per predictor, per minute, and its replicas' use."""

    def __init__(self):
        self.predictors: dict[str, PredictorMetrics] = {}
        self.minutes: deque[Minute] = deque(maxlen=SERIES_MINUTES)
        # replica id -> (predictor, cpu percent, memory bytes)
        self.replicas: dict[str, tuple[str, float, int]] = {}

    def predictor(self, key: str) -> PredictorMetrics:
        found = self.predictors.get(key)
        if found is None:
            found = self.predictors[key] = PredictorMetrics()
        return found

    def observe(self, key: str, seconds: float, error: bool, now: float | None = None) -> None:
        """A request to predictor `key` answered after `seconds` (error: 5xx or unreachable)."""
        self.predictor(key).observe(seconds, error)
        start = int(now or time.time()) // 60 * 60
        if not self.minutes or self.minutes[-1].start != start:
            self.minutes.append(Minute(start))
        minute = self.minutes[-1]
        minute.requests += 1
        if error:
            minute.errors += 1
        minute.latencies.add(seconds * 1000)

    def set_replica(self, replica: str, key: str, cpu_percent: float, memory: int) -> None:
        self.replicas[replica] = (key, cpu_percent, memory)

    def forget_replica(self, replica: str) -> None:
        self.replicas.pop(replica, None)

    def model(self, keys) -> dict:
        """The API's JSON: each predictor's figures and replicas, and the series by minute."""
        predictors = {}
        for key in keys:
            out = self.predictor(key).model()
            out["replicas"] = [
                {"id": rid, "cpu_percent": cpu, "memory_bytes": memory}
                for rid, (k, cpu, memory) in sorted(self.replicas.items())
                if k == key
            ]
            predictors[key] = out
        series = [
            {
                "time": datetime.fromtimestamp(m.start, UTC).isoformat(),
                "requests": m.requests,
                "errors": m.errors,
                "p50_ms": _round(percentile(m.latencies.values, 50)),
            }
            for m in self.minutes
        ]
        return {"predictors": predictors, "series": series}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(services: list[tuple[str, ServiceMetrics, list[str]]]) -> str:
    """The Prometheus text format (0.0.4) of services' metrics: (owner/name, metrics, keys)."""
    families = {
        "requests": ("workbench_inference_requests_total", "counter", "Requests answered."),
        "errors": (
            "workbench_inference_errors_total",
            "counter",
            "Requests answered 5xx or whose replica could not be reached.",
        ),
        "latency": (
            "workbench_inference_request_duration_seconds",
            "histogram",
            "Time from the platform receiving a request to the replica's answer.",
        ),
        "in_flight": (
            "workbench_inference_in_flight_requests",
            "gauge",
            "Requests being answered now.",
        ),
        "cpu": (
            "workbench_inference_replica_cpu_percent",
            "gauge",
            "A replica's CPU use, percent of one vCPU.",
        ),
        "memory": (
            "workbench_inference_replica_memory_bytes",
            "gauge",
            "A replica's memory use.",
        ),
    }
    lines: dict[str, list[str]] = {k: [] for k in families}
    for service, metrics, keys in services:
        for key in keys:
            m = metrics.predictor(key)
            labels = f'service="{_label(service)}",predictor="{_label(key)}"'
            lines["requests"].append(f"{families['requests'][0]}{{{labels}}} {m.requests}")
            lines["errors"].append(f"{families['errors'][0]}{{{labels}}} {m.errors}")
            name = families["latency"][0]
            cumulative = 0
            for bound, count in zip(BUCKETS, m.buckets, strict=True):
                cumulative += count
                lines["latency"].append(f'{name}_bucket{{{labels},le="{bound:g}"}} {cumulative}')
            lines["latency"].append(f'{name}_bucket{{{labels},le="+Inf"}} {m.requests}')
            lines["latency"].append(f"{name}_sum{{{labels}}} {m.latency_sum:.6f}")
            lines["latency"].append(f"{name}_count{{{labels}}} {m.requests}")
            lines["in_flight"].append(f"{families['in_flight'][0]}{{{labels}}} {m.in_flight}")
        for replica, (key, cpu, memory) in sorted(metrics.replicas.items()):
            labels = (
                f'service="{_label(service)}",predictor="{_label(key)}",replica="{_label(replica)}"'
            )
            lines["cpu"].append(f"{families['cpu'][0]}{{{labels}}} {cpu:g}")
            lines["memory"].append(f"{families['memory'][0]}{{{labels}}} {memory}")
    out = []
    for key, (name, kind, help_text) in families.items():
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(lines[key])
    return "\n".join(out) + "\n"
