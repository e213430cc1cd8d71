"""Saving an instance through the platform API (POST .../save?wait=true, answered when the
save is done) against a plain engine commit of the same container, interleaved, with medians;
and the saved image's added size against what was installed.

Run with `.venv/bin/python benchmarks/bench_save.py [--rounds 5]`. The side that goes first
alternates from round to round (plain commit first in even rounds, the API's save first in
odd ones), so neither always commits on caches the other just warmed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.settings import load_settings  # noqa: E402
from tests.platform import Hub, remove_engine_objects, run_code  # noqa: E402

TARGET_RATIO = 1.15
INSTALL = """
import os
os.makedirs(os.path.expanduser('~/.cache/bench'), exist_ok=True)
with open(os.path.expanduser('~/.cache/bench/blob'), 'wb') as f:
    f.write(os.urandom(20 * 1024 * 1024))
"""
INSTALLED = 20 * 1024 * 1024


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Saving through the platform API against a plain engine commit."
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each (default 5)")
    rounds = parser.parse_args(argv).rounds
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    settings, _ = load_settings(None)
    engine = settings.engine()
    client = docker.DockerClient(base_url=engine.url, timeout=600)
    with tempfile.TemporaryDirectory() as root:
        hub = Hub(Path(root), engine_url=engine.url)
        hub.start()
        try:
            user = hub.add_user("bencher")
            model = user.create_instance("src", image="python", flavor="cpu.small")
            assert run_code(user, model["url"], INSTALL)["error"] is None
            # this hub's container (Podman lists what has any one of several labels)
            (container,) = [
                c
                for c in client.containers.list(filters={"label": "ai-workbench.instance=src"})
                if c.name.startswith(hub.prefix) and c.labels.get("ai-workbench.user") == "bencher"
            ]
            api, plain, added = [], [], []

            def commit(i):
                t = time.monotonic()
                image = container.commit(
                    repository="localhost/bench-plain", tag=f"r{i}", pause=True
                )
                plain.append(time.monotonic() - t)
                client.images.remove(image.id, force=True)

            def save(i):
                t = time.monotonic()
                status = user.save_instance("src", "bench", f"r{i}", wait=True)
                api.append(time.monotonic() - t)
                added.append(status["image"]["added_size"])
                user.delete_image("bench", f"r{i}")

            for i in range(rounds):
                for step in (commit, save) if i % 2 == 0 else (save, commit):
                    step(i)
            api_m, plain_m = statistics.median(api), statistics.median(plain)
            ratio = api_m / plain_m
            print(f"{rounds} rounds each, the side that goes first alternating")
            runs = ", ".join(f"{x:.2f}" for x in api)
            print(f"save through the API: median {api_m:.2f} s  ({runs})  (no target of its own)")
            runs = ", ".join(f"{x:.2f}" for x in plain)
            print(f"plain engine commit:  median {plain_m:.2f} s  ({runs})  (the baseline)")
            verdict = "meets" if ratio <= TARGET_RATIO else "misses"
            print(f"ratio {ratio:.2f} ({verdict} the target of <= {TARGET_RATIO})")
            print(
                f"added size {statistics.median(added) / 1e6:.1f} MB for {INSTALLED / 1e6:.1f} MB "
                f"written (ratio {statistics.median(added) / INSTALLED:.2f}; no target set)"
            )
        finally:
            hub.stop()
            remove_engine_objects(engine.url, hub.prefix)


if __name__ == "__main__":
    main()
