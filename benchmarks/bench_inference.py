"""Online services through the platform against calling the same serving container directly.

Run from the repository root (the pytorch image must be built: `make images-all`):

    .venv/bin/python benchmarks/bench_inference.py [--requests 2000] [--rounds 3] [--json FILE]

It starts a real hub (tests.platform.Hub: JupyterHub, proxy and platform API on free ports)
on the local engine, signs a user up, trains a small scikit-learn model in a training job,
registers the job's output as a model and deploys it as a service of one replica (flavor
--flavor, default cpu.small). Then three figures:

1. Added latency. --requests small v1 `:predict` calls (one row of four floats) through the
   platform (the service's stable URL on the hub's public address: the proxy, then the
   platform's router with its key check, traffic split and metrics) and as many straight to
   the replica's container (its address on the service's network, which this host
   reaches), and through the platform's inference port ([workbench.inference] port: the
   router alone, without the proxy). One keep-alive connection per path, calls one after
   another, in blocks of 100 that rotate the paths, the order reversing from block to block.
   p50 and p99 of each; added = platform - direct. Target: p50 added <= 1 ms.
2. Throughput. --concurrency clients (threads, one keep-alive connection each) call for
   --seconds per path and round, --rounds rounds, the order reversing from round to round.
   Ratio = platform requests per second / direct, for both platform paths; target >= 0.9.
3. Cold start. Deploying a new service of the same model (POST /services) until the first
   successful answer through the platform, against starting by hand a container made from
   the platform's replica's own configuration (image, command, environment, the model
   folder mounted read-only, user, CPU and memory limits, network) until its first
   successful answer. Ratio = platform / by hand, medians over --rounds; target <= 1.2.

Timings on a shared machine are noisy: compare the ratios, not the absolute figures.
Everything made (the hub, its services' containers and networks, the containers made by
hand, which share the hub's name prefix) is removed at the end, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import httpx  # noqa: E402

from benchmarks.bench_jobs import archive, percentile, wind_down  # noqa: E402
from hub.settings import load_settings  # noqa: E402
from images.catalog import load_catalog  # noqa: E402
from spawner.container import labels_match  # noqa: E402
from spawner.engine import CONTAINERS_CONF  # noqa: E402
from tests.platform import Hub, free_port  # noqa: E402

log = logging.getLogger("bench_inference")

TARGET_ADDED_P50_MS = 1.0
TARGET_THROUGHPUT = 0.9
TARGET_COLD_START = 1.2
USER = "bencher"
MODEL = "bench-model"
SERVICE = "bench-svc"
TIMEOUT = 300.0
BLOCK = 100
BODY = {"instances": [[0.1, 0.7, 0.3, 0.9]]}
TRAIN = """
import os
import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
x = rng.random((200, 4)).astype("float32")
y = (x[:, 0] + x[:, 1] > 1).astype(int)
out = os.environ["WORKBENCH_OUTPUT_DIR"]
joblib.dump(LogisticRegression().fit(x, y), os.path.join(out, "model.joblib"))
print("saved", flush=True)
"""
LABEL_OWNER = "ai-workbench.user"
LABEL_NAME = "ai-workbench.service-name"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Bench:
    """The hub, its user, the engine, and the measurements."""

    def __init__(self, args, hub: Hub, dc: docker.APIClient):
        self.args = args
        self.hub = hub
        self.dc = dc
        self.user = hub.add_user(USER)
        self.headers = {"Authorization": f"token {self.user.token}"}

    def api(self, method: str, path: str, body=None):
        return self.user.api(method, path, body)

    # --- the model and its services -------------------------------------------------
    def make_model(self) -> None:
        log.info("training a small model in a job")
        self.api(
            "POST",
            "jobs",
            {
                "name": "bench-train",
                "source": {
                    "kind": "file",
                    "entry": "train.py",
                    "archive": archive({"train.py": TRAIN}),
                },
                "image": "pytorch",
                "runtime": "plain",
                "flavor": self.args.flavor,
            },
        )
        deadline = time.monotonic() + TIMEOUT
        while (state := self.api("GET", f"jobs/{USER}/bench-train/versions/1")["state"]) not in (
            "succeeded",
            "failed",
            "stopped",
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("the training job did not finish")
            time.sleep(1)
        if state != "succeeded":
            raise RuntimeError(f"the training job {state}")
        self.api(
            "POST",
            "models",
            {
                "name": MODEL,
                "format": "sklearn",
                "source": {"kind": "job", "job": "bench-train", "version": 1, "path": "output"},
            },
        )

    def deploy(self, name: str) -> None:
        self.api(
            "POST",
            "services",
            {
                "name": name,
                "predictors": [
                    {
                        "model": MODEL,
                        "version": 1,
                        "weight": 100,
                        "flavor": self.args.flavor,
                        "min_replicas": 1,
                        "max_replicas": 1,
                    }
                ],
            },
        )

    def predict_path(self, model_name: str) -> str:
        return f"/v1/models/{model_name}:predict"

    def wait_answer(self, client: httpx.Client, url: str, headers=None) -> float:
        """perf_counter when url first answers a predict with 200."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                r = client.post(url, json=BODY, headers=headers, timeout=10)
                if r.status_code == 200:
                    return time.perf_counter()
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{url} did not answer in {TIMEOUT:.0f} s")

    def replica(self, name: str) -> dict:
        """The engine's inspection of a service's (only) replica."""
        wanted = {LABEL_OWNER: USER, LABEL_NAME: name}
        found = [
            c
            for c in self.dc.containers(all=True, filters={"label": f"{LABEL_NAME}={name}"})
            if labels_match(c.get("Labels"), wanted)  # Podman: any one of several labels
        ]
        if len(found) != 1:
            raise RuntimeError(f"service {name} has {len(found)} replicas, expected 1")
        return self.dc.inspect_container(found[0]["Id"])

    @staticmethod
    def address(info: dict) -> str:
        for net in (info["NetworkSettings"].get("Networks") or {}).values():
            if net.get("IPAddress"):
                return f"http://{net['IPAddress']}:8080"
        raise RuntimeError(f"replica {info['Name']} has no address")

    @staticmethod
    def model_name(info: dict) -> str:
        for item in info["Config"].get("Env") or []:
            key, _, value = item.partition("=")
            if key == "WORKBENCH_MODEL":
                return json.loads(value)["name"]
        raise RuntimeError("the replica has no WORKBENCH_MODEL")

    # --- 1. added latency -----------------------------------------------------------
    def latency(self, platform_url: str, direct_url: str, port_url: str) -> dict:
        n = self.args.requests
        times: dict[str, list[float]] = {"platform": [], "direct": [], "port": []}
        urls = {"platform": platform_url, "direct": direct_url, "port": port_url}
        clients = {side: httpx.Client(timeout=30) for side in urls}
        try:
            for side, client in clients.items():  # warm the connections and the model
                for _ in range(50):
                    self.check(client.post(urls[side], json=BODY, headers=self.headers))
            for block in range(0, n, BLOCK):
                order = ["platform", "direct", "port"]
                if (block // BLOCK) % 2:
                    order.reverse()
                for side in order:
                    client, url = clients[side], urls[side]
                    for _ in range(min(BLOCK, n - block)):
                        t0 = time.perf_counter()
                        self.check(client.post(url, json=BODY, headers=self.headers))
                        times[side].append((time.perf_counter() - t0) * 1000)
        finally:
            for client in clients.values():
                client.close()
        out = {
            side: {"p50_ms": percentile(v, 0.5), "p99_ms": percentile(v, 0.99), "n": len(v)}
            for side, v in times.items()
        }
        out["added_p50_ms"] = out["platform"]["p50_ms"] - out["direct"]["p50_ms"]
        out["added_p99_ms"] = out["platform"]["p99_ms"] - out["direct"]["p99_ms"]
        out["port_added_p50_ms"] = out["port"]["p50_ms"] - out["direct"]["p50_ms"]
        out["port_added_p99_ms"] = out["port"]["p99_ms"] - out["direct"]["p99_ms"]
        return out

    @staticmethod
    def check(r: httpx.Response) -> None:
        if r.status_code != 200:
            raise RuntimeError(f"{r.request.url} answered {r.status_code}: {r.text[:300]}")

    # --- 2. throughput --------------------------------------------------------------
    def run_load(self, url: str) -> float:
        """Requests per second of --concurrency clients over --seconds."""
        stop_at = time.perf_counter() + self.args.seconds
        counts, errors = [0] * self.args.concurrency, []

        def worker(i: int) -> None:
            with httpx.Client(timeout=30) as client:
                while time.perf_counter() < stop_at:
                    r = client.post(url, json=BODY, headers=self.headers)
                    if r.status_code != 200:
                        errors.append(r.status_code)
                        return
                    counts[i] += 1

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(counts))]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"{url} answered {errors[0]} under load")
        return sum(counts) / (time.perf_counter() - t0)

    def throughput(self, platform_url: str, direct_url: str, port_url: str) -> dict:
        urls = {"platform": platform_url, "direct": direct_url, "port": port_url}
        rates: dict[str, list[float]] = {side: [] for side in urls}
        for r in range(self.args.rounds):
            order = list(urls) if r % 2 == 0 else list(reversed(urls))
            for side in order:
                rate = self.run_load(urls[side])
                rates[side].append(rate)
                log.info("throughput round %s %s: %.0f requests/s", r + 1, side, rate)
        return {
            "rates": rates,
            "ratio": median(rates["platform"]) / median(rates["direct"]),
            "port_ratio": median(rates["port"]) / median(rates["direct"]),
            "concurrency": self.args.concurrency,
        }

    # --- 3. cold start --------------------------------------------------------------
    def cold_platform(self, n: int) -> float:
        name = f"bench-cold-{n}"
        url = None
        with httpx.Client() as client:
            t0 = time.perf_counter()
            self.deploy(name)
            service = self.api("GET", f"services/{USER}/{name}")
            url = service["url"] + self.predict_path(MODEL)
            done = self.wait_answer(client, url, self.headers)
        self.api("DELETE", f"services/{USER}/{name}")
        return done - t0

    def cold_by_hand(self, template: dict, n: int) -> float:
        """A container made from the platform's replica's configuration, started by hand."""
        host = template["HostConfig"]
        networks = template["NetworkSettings"].get("Networks") or {}
        network = next(iter(networks))
        name = f"{self.hub.prefix}-plain-cold-{n}"
        binds = [
            f"{m['Source']}:{m['Destination']}:ro"
            for m in template.get("Mounts", [])
            if m.get("Source")
        ]
        with httpx.Client() as client:
            t0 = time.perf_counter()
            container = self.dc.create_container(
                template["Config"]["Image"],
                command=template["Config"].get("Cmd"),
                environment=template["Config"].get("Env"),
                user=template["Config"].get("User") or None,
                name=name,
                host_config=self.dc.create_host_config(
                    binds=binds,
                    nano_cpus=host.get("NanoCpus") or None,
                    mem_limit=host.get("Memory") or None,
                    network_mode=network,
                    cap_drop=host.get("CapDrop"),
                    security_opt=host.get("SecurityOpt"),
                ),
            )
            try:
                self.dc.start(container)
                address = self.address(self.dc.inspect_container(container))
                done = self.wait_answer(client, address + self.predict_path(self.model_of))
                return done - t0
            finally:
                self.dc.remove_container(container, force=True)

    def cold_start(self, template: dict) -> dict:
        times: dict[str, list[float]] = {"platform": [], "by_hand": []}
        for r in range(self.args.rounds):
            order = ["platform", "by_hand"] if r % 2 == 0 else ["by_hand", "platform"]
            for side in order:
                if side == "platform":
                    seconds = self.cold_platform(r)
                else:
                    seconds = self.cold_by_hand(template, r)
                times[side].append(seconds)
                log.info("cold start round %s %s: %.2f s", r + 1, side, seconds)
        return {"seconds": times, "ratio": median(times["platform"]) / median(times["by_hand"])}

    # --- all ------------------------------------------------------------------------
    def run(self) -> dict:
        self.make_model()
        log.info("deploying the service")
        self.deploy(SERVICE)
        service = self.api("GET", f"services/{USER}/{SERVICE}")
        info = self.replica(SERVICE)
        self.model_of = self.model_name(info)
        path = self.predict_path(self.model_of)
        platform_url = service["url"] + path
        with httpx.Client() as client:
            self.wait_answer(client, platform_url, self.headers)
        direct_url = self.address(info) + path
        port_url = service["direct_url"] + path
        log.info("latency: %s requests per side", self.args.requests)
        latency = self.latency(platform_url, direct_url, port_url)
        log.info("throughput: %s clients, %s s per side", self.args.concurrency, self.args.seconds)
        throughput = self.throughput(platform_url, direct_url, port_url)
        log.info("cold start: %s rounds", self.args.rounds)
        cold = self.cold_start(info)
        return {"latency": latency, "throughput": throughput, "cold_start": cold}


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_report(rep: dict) -> None:
    lat, thr, cold = rep["latency"], rep["throughput"], rep["cold_start"]
    meta = rep["meta"]
    print("=" * 78)
    print(f"Online services through the platform ({meta['cpus']} CPUs, {meta['engine']})")
    print(f"1. latency of {lat['direct']['n']} sequential calls per path (p50 / p99 ms):")
    for side, what in (
        ("direct", "the replica, directly"),
        ("port", "the platform's inference port"),
        ("platform", "the hub's public URL (proxy)"),
    ):
        print(f"   {what:32} {lat[side]['p50_ms']:6.2f} / {lat[side]['p99_ms']:6.2f}")
    print(
        f"   added at p50: inference port {lat['port_added_p50_ms']:.2f} ms"
        f" ({_met(lat['port_added_p50_ms'] <= TARGET_ADDED_P50_MS)}),"
        f" public URL {lat['added_p50_ms']:.2f} ms"
        f" ({_met(lat['added_p50_ms'] <= TARGET_ADDED_P50_MS)}); target <= {TARGET_ADDED_P50_MS}"
    )
    print(
        f"   added at p99: inference port {lat['port_added_p99_ms']:.2f} ms,"
        f" public URL {lat['added_p99_ms']:.2f} ms"
    )
    rates = {side: median(v) for side, v in thr["rates"].items()}
    print(
        f"2. throughput at {thr['concurrency']} clients (requests/s): direct {rates['direct']:.0f},"
        f" inference port {rates['port']:.0f} (ratio {thr['port_ratio']:.2f},"
        f" {_met(thr['port_ratio'] >= TARGET_THROUGHPUT)}), public URL {rates['platform']:.0f}"
        f" (ratio {thr['ratio']:.2f}, {_met(thr['ratio'] >= TARGET_THROUGHPUT)});"
        f" target >= {TARGET_THROUGHPUT}"
    )
    print(
        f"3. cold start: platform median {median(cold['seconds']['platform']):.2f} s, by hand "
        f"{median(cold['seconds']['by_hand']):.2f} s, ratio {cold['ratio']:.2f}"
        f" (target <= {TARGET_COLD_START}: {_met(cold['ratio'] <= TARGET_COLD_START)})"
    )
    print("=" * 78)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def benchmark(args, root: Path) -> dict:
    config = REPO / "workbench.toml"
    settings, _ = load_settings(config if config.exists() else None)
    engine = settings.engine()
    dc = docker.APIClient(base_url=engine.url, timeout=TIMEOUT, version="1.41")
    ref = load_catalog().get("pytorch").ref
    try:
        dc.inspect_image(ref)
    except docker.errors.ImageNotFound:
        sys.exit(f"Image {ref} is not built; build it first (`workbench images build pytorch`).")
    (root / "hub").mkdir()
    hub = Hub(
        root / "hub",
        engine_url=engine.url,
        extra_settings=f"[workbench.inference]\nport = {free_port()}\n",
    )
    log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
    started = time.monotonic()
    try:
        hub.start()
        rep = Bench(args, hub, dc).run()
        rep["meta"] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "engine": engine.kind,
            "flavor": args.flavor,
            "seconds": round(time.monotonic() - started, 1),
        }
        return rep
    finally:
        wind_down(hub, engine, args.hub_log)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000, help="latency calls per side (2000)")
    p.add_argument("--concurrency", type=int, default=8, help="clients of figure 2 (8)")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per throughput run (5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of figures 2 and 3 (3)")
    p.add_argument("--flavor", default="cpu.small", help="flavor of the replica (cpu.small)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    for name in ("requests", "concurrency", "rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("CONTAINERS_CONF", CONTAINERS_CONF)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        try:
            rep = benchmark(args, Path(tmp))
        except KeyboardInterrupt:
            log.warning("interrupted; cleaned up")
            return 130
    print_report(rep)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2) + "\n")
        log.info("results written to %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
