"""Instance start time through the hub, against a plain container run of the same image.

Run from the repository root (the image must be built, e.g. by `make test`):

    .venv/bin/python benchmarks/bench_spawn.py [--runs 7] [--json results.json]

What it measures, in one process, on the local container engine (Podman or Docker):

* hub create: a real hub (tests.platform.Hub: JupyterHub, proxy and platform API on free
  ports) creates a new instance of the image (``--image``, default python) through the
  platform API (WorkbenchClient.create_instance, which returns once the instance runs).
  Timed from that request until JupyterLab's ``GET /user/admin/<name>/api/status`` answers
  200 through the hub's proxy, polled every 20 ms after the create call returns.
* hub restart: the same instance, stopped, started again (start_instance), timed the same way.
* plain run: the same image run without the hub, with the same CPU and memory limits as the
  instances' flavor (``--flavor``, default cpu.medium), as
  ``jupyter-server --ServerApp.ip=0.0.0.0 --ServerApp.port=8888 --IdentityProvider.token=...``
  with port 8888 published on 127.0.0.1 and user 1000:100. Timed from the run request until
  ``GET http://127.0.0.1:<port>/api/status`` answers 200 with the token.

The plain run goes through the same API path the spawner uses: docker-py on the engine's
Docker Engine API socket (create container, start it, read its published port), not the
``podman`` CLI, so the baseline pays no CLI start-up and the hub's overhead is what differs.
The hub is pointed at that same engine socket (its ``docker_host`` setting).

Runs are interleaved, and the side that goes first alternates from round to round (hub then
plain, plain then hub, ...), so neither side always runs on caches the other just warmed;
the first round is a warm-up and not counted. Every hub run creates a fresh instance
(deleted after, with its storage volume) so it starts a fresh container, as the plain run
does.

Reading the output: for each series the median, p95, min and max of the time to a 200 from
/api/status, in seconds, and the median of the API call alone (``call``: until the create or
start request returns, or until the plain container runs with its port known). The ratios
divide the hub medians by the plain median; the project's target is a ratio of at most 1.25
for both. With few runs p95 is an interpolation between the largest samples.

Everything created (the hub process, its containers and volumes, which share a random name
prefix, and a Podman service if the benchmark had to start one) is removed at the end, also
on errors and Ctrl-C. ``--hub-log PATH`` keeps a copy of the hub's log for a closer look
("Calling Spawner.start", the spawner's progress messages, "took X seconds to start").
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import requests  # noqa: E402
from workbench import WorkbenchClient  # noqa: E402

from hub.settings import load_settings  # noqa: E402
from images.catalog import load_catalog  # noqa: E402
from spawner.engine import (  # noqa: E402
    CONTAINERS_CONF,
    Engine,
    EngineUnavailable,
    find_engine,
    start_podman_service,
)
from spawner.flavors import Flavor, load_flavors  # noqa: E402
from tests.platform import Hub  # noqa: E402

log = logging.getLogger("bench_spawn")

TARGET_RATIO = 1.25
POLL_INTERVAL = 0.02
READY_TIMEOUT = 120.0
SERIES = ("hub create", "hub restart", "plain run")


# --- engine ---------------------------------------------------------------------------


class EngineSession:
    """The engine the benchmark uses; starts (and later stops) a Podman service if none answers."""

    def __init__(self, root: Path):
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.engine: Engine | None = None

    def open(self) -> Engine:
        settings, _ = load_settings(self._settings_file())
        try:
            self.engine = find_engine(settings.docker_host, podman_socket=settings.podman_socket)
        except EngineUnavailable:
            self.engine = self._start_podman()
        log.info("engine: %s (%s)", self.engine.url, self.engine.kind)
        return self.engine

    @staticmethod
    def _settings_file() -> Path | None:
        path = REPO / "workbench.toml"
        return path if path.exists() else None

    def _start_podman(self) -> Engine:
        if not shutil.which("podman"):
            raise EngineUnavailable("No container engine answers and Podman is not installed.")
        sock = self.root / "podman.sock"
        self.proc = start_podman_service(str(sock), CONTAINERS_CONF, str(self.root / "podman.log"))
        return find_engine(f"unix://{sock}")

    def close(self):
        if self.proc and self.proc.poll() is None:
            log.info("stopping the Podman service this benchmark started")
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def remove_by_prefix(dc: docker.APIClient, prefix: str):
    """Force-remove the containers and volumes whose names start with prefix."""
    for c in dc.containers(all=True):
        names = [n.lstrip("/") for n in c.get("Names") or []]
        if any(n.startswith(prefix) for n in names):
            log.info("removing container %s", names[0])
            _ignore_missing(dc.remove_container, c["Id"], force=True, v=True)
    for v in dc.volumes().get("Volumes") or []:
        if v["Name"].startswith(prefix):
            log.info("removing volume %s", v["Name"])
            _ignore_missing(dc.remove_volume, v["Name"], force=True)


def _ignore_missing(call: Callable, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as e:
        log.warning("cleanup: %s", e)


# --- timing ---------------------------------------------------------------------------


def wait_status(url: str, token: str, start: float) -> float:
    """Seconds from start until GET url answers 200 (polled every POLL_INTERVAL)."""
    headers = {"Authorization": f"token {token}"}
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    with requests.Session() as s:
        while time.monotonic() < deadline:
            try:
                r = s.get(url, headers=headers, timeout=5, allow_redirects=False)
                if r.status_code == 200:
                    return time.perf_counter() - start
                last = f"HTTP {r.status_code}"
            except requests.RequestException as e:
                last = type(e).__name__
            time.sleep(POLL_INTERVAL)
    raise TimeoutError(f"{url} did not answer 200 within {READY_TIMEOUT:.0f} s (last: {last})")


def sample(call_s: float, ready_s: float) -> dict:
    return {"call_s": round(call_s, 4), "ready_s": round(ready_s, 4)}


def hub_status_url(hub_url: str, model: dict) -> str:
    return f"{hub_url}{model['url'].rstrip('/')}/api/status"


def measure_hub_create(client: WorkbenchClient, name: str, image: str, flavor: Flavor) -> dict:
    start = time.perf_counter()
    model = client.create_instance(name, image=image, flavor=flavor.name)
    call_s = time.perf_counter() - start
    ready_s = wait_status(hub_status_url(client.url, model), client.token, start)
    return sample(call_s, ready_s)


def measure_hub_restart(client: WorkbenchClient, name: str) -> dict:
    client.stop_instance(name)
    start = time.perf_counter()
    model = client.start_instance(name)
    call_s = time.perf_counter() - start
    ready_s = wait_status(hub_status_url(client.url, model), client.token, start)
    return sample(call_s, ready_s)


def measure_hub(
    client: WorkbenchClient, name: str, image: str, flavor: Flavor
) -> tuple[dict, dict]:
    """Create, then stop and restart, one fresh instance of image; it is deleted after."""
    try:
        created = measure_hub_create(client, name, image, flavor)
        restarted = measure_hub_restart(client, name)
    finally:
        _delete_instance(client, name)
    return created, restarted


def _delete_instance(client: WorkbenchClient, name: str):
    try:
        client.stop_instance(name)
        client.delete_instance(name)
    except Exception as e:  # noqa: BLE001 - cleanup by prefix catches what is left
        log.warning("could not delete instance %s: %s", name, e)


def plain_command(token: str) -> list[str]:
    return [
        "/opt/jupyter/bin/jupyter-server",
        "--ServerApp.ip=0.0.0.0",
        "--ServerApp.port=8888",
        f"--IdentityProvider.token={token}",
        "--ServerApp.root_dir=/home/jovyan/work",
    ]


def run_plain(dc: docker.APIClient, image: str, name: str, token: str, flavor: Flavor) -> str:
    """Create and start the plain container, with the flavor's limits; its published port."""
    host_config = dc.create_host_config(
        port_bindings={8888: ("127.0.0.1",)},
        mem_limit=flavor.memory,
        memswap_limit=flavor.memory,
        cpu_period=100_000,
        cpu_quota=int(flavor.cpu * 100_000),
    )
    container = dc.create_container(
        image,
        command=plain_command(token),
        name=name,
        user="1000:100",
        ports=[8888],
        host_config=host_config,
    )
    dc.start(container["Id"])
    return dc.port(container["Id"], 8888)[0]["HostPort"]


def measure_plain(dc: docker.APIClient, image: str, name: str, flavor: Flavor) -> dict:
    token = secrets.token_hex(16)
    try:
        start = time.perf_counter()
        port = run_plain(dc, image, name, token, flavor)
        call_s = time.perf_counter() - start
        ready_s = wait_status(f"http://127.0.0.1:{port}/api/status", token, start)
    finally:
        _ignore_missing(dc.remove_container, name, force=True, v=True)
    return sample(call_s, ready_s)


# --- the benchmark --------------------------------------------------------------------


def run_series(
    client: WorkbenchClient,
    dc: docker.APIClient,
    image: str,
    ref: str,
    prefix: str,
    runs: int,
    flavor: Flavor,
) -> dict[str, list[dict]]:
    """Interleaved hub and plain runs of the catalog image (ref: its reference), the side
    that goes first alternating; the first round is a warm-up and not kept."""
    results: dict[str, list[dict]] = {s: [] for s in SERIES}
    for i in range(runs + 1):
        label = "warm-up" if i == 0 else f"run {i}/{runs}"
        hub_first = i % 2 == 0
        if hub_first:
            created, restarted = measure_hub(client, f"bench-{i}", image, flavor)
        plain = measure_plain(dc, ref, f"{prefix}-plain-{i}", flavor)
        if not hub_first:
            created, restarted = measure_hub(client, f"bench-{i}", image, flavor)
        log.info(
            "%s (%s first): hub create %.2f s, hub restart %.2f s, plain run %.2f s",
            label,
            "hub" if hub_first else "plain",
            created["ready_s"],
            restarted["ready_s"],
            plain["ready_s"],
        )
        if i:
            for series, s in zip(SERIES, (created, restarted, plain), strict=True):
                results[series].append(s)
    return results


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, interpolated linearly between order statistics."""
    xs = sorted(values)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(samples: list[dict]) -> dict:
    ready = [s["ready_s"] for s in samples]
    return {
        "median": statistics.median(ready),
        "p95": percentile(ready, 0.95),
        "min": min(ready),
        "max": max(ready),
        "call_median": statistics.median(s["call_s"] for s in samples),
        "samples": samples,
    }


def report(results: dict[str, list[dict]], meta: dict) -> dict:
    stats = {series: summarize(samples) for series, samples in results.items()}
    plain = stats["plain run"]["median"]
    ratios = {
        "hub create / plain run": stats["hub create"]["median"] / plain,
        "hub restart / plain run": stats["hub restart"]["median"] / plain,
    }
    return {
        **meta,
        "series": stats,
        "ratios": ratios,
        "target_ratio": TARGET_RATIO,
        "target_met": all(r <= TARGET_RATIO for r in ratios.values()),
    }


def print_report(rep: dict):
    print()
    print(
        f"{rep['runs']} runs each, image {rep['image']}, flavor {rep['flavor']}, "
        f"engine {rep['engine']}; the side that goes first alternates"
    )
    print(
        f"{'series':<12} {'median':>8} {'p95':>8} {'min':>8} {'max':>8} {'call':>8}"
        "  (seconds; no target of their own: the targets are on the ratios below)"
    )
    for series, st in rep["series"].items():
        cols = " ".join(f"{st[k]:8.3f}" for k in ("median", "p95", "min", "max", "call_median"))
        print(f"{series:<12} {cols}")
    print()
    for name, ratio in rep["ratios"].items():
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(f"{name:<24} {ratio:5.2f}  ({verdict} the target of {TARGET_RATIO})")
    print(f"target met: {'yes' if rep['target_met'] else 'no'}")


# --- setup and teardown ---------------------------------------------------------------


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def image_ref(name: str) -> str:
    return load_catalog().get(name).ref


def check_image(dc: docker.APIClient, ref: str):
    try:
        dc.inspect_image(ref)
    except docker.errors.ImageNotFound:
        sys.exit(f"Image {ref} is not built; build it first (`workbench images build`).")


def benchmark(args, root: Path) -> dict:
    engines = EngineSession(root)
    hub = dc = None
    try:
        engine = engines.open()
        dc = docker.APIClient(base_url=engine.url, timeout=120)
        ref = image_ref(args.image)
        check_image(dc, ref)
        hub = Hub(root, engine_url=engine.url)
        log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
        hub.start()
        flavor = load_flavors()[args.flavor]
        results = run_series(hub.client(), dc, args.image, ref, hub.prefix, args.runs, flavor)
        meta = {
            "runs": args.runs,
            "flavor": flavor.name,
            "image": ref,
            "engine": engine.url,
            "cpus": os.cpu_count(),
            "host": platform.node(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return report(results, meta)
    finally:
        _teardown(hub, dc, engines, args.hub_log)


def _teardown(
    hub: Hub | None, dc: docker.APIClient | None, engines: EngineSession, keep_log: str | None
):
    """Stop the hub, remove what it and the plain runs left, stop our Podman service.

    Ctrl-C and SIGTERM are ignored meanwhile, so a second one cannot cut the cleanup short.
    """
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _cleanup(hub, dc, engines, keep_log)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _cleanup(
    hub: Hub | None, dc: docker.APIClient | None, engines: EngineSession, keep_log: str | None
):
    if hub is not None:
        log.info("stopping the hub")
        hub.stop()
        if dc is not None:
            remove_by_prefix(dc, hub.prefix)
        if keep_log and hub.log_path.exists():
            shutil.copyfile(hub.log_path, keep_log)
            log.info("hub log copied to %s", keep_log)
    engines.close()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7, help="measured runs of each (default 7)")
    p.add_argument("--image", default="python", help="catalog image (default python)")
    p.add_argument(
        "--flavor",
        default="cpu.medium",
        help="flavor of the hub's instances; the plain run gets the same limits "
        "(default cpu.medium)",
    )
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("CONTAINERS_CONF", CONTAINERS_CONF)
    # Ctrl-C and SIGTERM end the run through the cleanup, even where SIGINT came in ignored
    # (a background job); the hub's processes then inherit the default disposition, too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-spawn-") as tmp:
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
