"""Many users starting at once: instances created through the hub against plain containers.

Run from the repository root (the image must be built, e.g. by `make test`):

    .venv/bin/python benchmarks/bench_spawn_concurrent.py [--users 20] [--concurrency 10]

Each round, on one real hub (tests.platform.Hub) and the same engine:

* hub: each of ``--users`` users creates and starts one instance of ``--image`` through the
  platform API (WorkbenchClient.create_instance), ``--concurrency`` at a time; each is timed
  from its request until JupyterLab's /api/status answers 200 through the hub's proxy.
* plain: as many plain containers of the same image with the same CPU and memory limits
  (``--flavor``), the same number at a time, each running jupyter-server, timed from its
  create request until its /api/status answers (bench_spawn.py's plain run).

The side that goes first alternates each round; everything a round made is removed before
the next. The report gives each side's median and p95 over every start of every round and
the ratio of the medians; the project's target is at most 1.3 at 10 concurrent starts
(bench_spawn.py measures one start alone, target 1.25).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_spawn import (  # noqa: E402
    CONTAINERS_CONF,
    EngineSession,
    _delete_instance,
    check_image,
    image_ref,
    measure_hub_create,
    measure_plain,
    percentile,
    remove_by_prefix,
)
from spawner.flavors import load_flavors  # noqa: E402
from tests.platform import Hub  # noqa: E402

log = logging.getLogger("bench_spawn_concurrent")


def hub_round(clients: list, image: str, flavor, concurrency: int, name: str) -> list[float]:
    """Seconds to ready of one instance per user, `concurrency` creates at a time."""
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            samples = list(pool.map(lambda c: measure_hub_create(c, name, image, flavor), clients))
    finally:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda c: _delete_instance(c, name), clients))
    return [s["ready_s"] for s in samples]


def plain_round(dc, ref: str, prefix: str, flavor, count: int, concurrency: int) -> list[float]:
    """Seconds to ready of `count` plain containers, `concurrency` at a time."""
    with ThreadPoolExecutor(concurrency) as pool:
        samples = list(
            pool.map(lambda i: measure_plain(dc, ref, f"{prefix}-plain-{i}", flavor), range(count))
        )
    return [s["ready_s"] for s in samples]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=20, help="starts per side and round (20)")
    p.add_argument("--concurrency", type=int, default=10, help="at a time (default 10)")
    p.add_argument("--rounds", type=int, default=2, help="measured rounds (default 2)")
    p.add_argument("--image", default="python", help="catalog image (default python)")
    p.add_argument("--flavor", default="cpu.tiny", help="limits of both sides (cpu.tiny)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("CONTAINERS_CONF", CONTAINERS_CONF)
    flavor = load_flavors()[args.flavor]
    hub_times: list[float] = []
    plain_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-spawn-many-") as tmp:
        root = Path(tmp)
        engines = EngineSession(root)
        hub = dc = None
        try:
            engine = engines.open()
            dc = docker.APIClient(base_url=engine.url, timeout=300)
            ref = image_ref(args.image)
            check_image(dc, ref)
            hub = Hub(root, engine_url=engine.url)
            hub.start()
            clients = [hub.add_user(f"many{i:03d}") for i in range(args.users)]
            for i in range(args.rounds + 1):
                label = "warm-up" if i == 0 else f"round {i}/{args.rounds}"
                sides = [
                    (
                        "hub",
                        lambda i=i: hub_round(
                            clients, args.image, flavor, args.concurrency, f"c{i}"
                        ),
                    ),
                    (
                        "plain",
                        lambda i=i: plain_round(
                            dc, ref, f"{hub.prefix}-r{i}", flavor, args.users, args.concurrency
                        ),
                    ),
                ]
                if i % 2:
                    sides.reverse()
                got = {}
                for side, run in sides:
                    started = time.perf_counter()
                    got[side] = run()
                    log.info(
                        "%s: %s %d starts in %.1f s (median %.2f s)",
                        label,
                        side,
                        len(got[side]),
                        time.perf_counter() - started,
                        percentile(got[side], 0.5),
                    )
                if i:
                    hub_times += got["hub"]
                    plain_times += got["plain"]
        finally:
            if hub is not None:
                hub.stop()
                if dc is not None:
                    remove_by_prefix(dc, hub.prefix)
            engines.close()
    hub_med, plain_med = percentile(hub_times, 0.5), percentile(plain_times, 0.5)
    ratio = hub_med / plain_med
    print()
    print(
        f"{args.users} starts per side, {args.concurrency} at a time, {args.rounds} rounds, "
        f"{flavor.name}, {os.cpu_count()} CPUs"
    )
    print(f"  hub    median {hub_med:6.2f} s  p95 {percentile(hub_times, 0.95):6.2f} s")
    print(f"  plain  median {plain_med:6.2f} s  p95 {percentile(plain_times, 0.95):6.2f} s")
    met = "met" if ratio <= 1.3 else "missed"
    print(f"  ratio  {ratio:.2f} (target <= 1.3 at 10 concurrent starts: {met})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
