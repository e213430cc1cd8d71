"""Publishing a notebook case to the gallery and downloading it, against the same bytes by hand.

Run from the repository root (the python image must be built: `make images`):

    .venv/bin/python benchmarks/bench_gallery.py [--mib 50] [--files 5] [--repeat 3]
        [--json FILE]

It starts a real hub (tests.platform.Hub: JupyterHub, proxy and platform API on free ports)
on the local engine, signs a user up, starts their instance (python image, cpu.tiny) and
writes a notebook case into its storage: a small notebook and --files data files of random
bytes, --mib MiB in all. Each round then measures two sides over the same bytes:

- gallery: `POST /gallery/assets` of the case (a copy container on the engine copies it out
  of the instance's storage; every file is hashed into the content-addressed blob store,
  every notebook parsed, the main one rendered for the preview), timed from the POST until
  the 201; then every file downloaded through the platform's API (`GET .../files` and one
  `GET .../files/{path}` each; the service hashes each stored copy before sending it) with
  its SHA-256 checked by this process, timed from the listing until the last file checked.
  The asset is unpublished after (not timed), so every round stores its blobs anew.
- plain: the same copy container (storage_copy.EngineStorageCopier, the same image, limits
  and staging folder on the same disk) copying the same folder out of the same storage, timed
  as one copy; then the same files downloaded from a local static HTTP server
  (http.server, serving the copied folder) with their SHA-256 checked by this process.

Ratios = gallery / plain (medians over --repeat rounds), for the publish, the download, and
both together. The gallery's download goes through JupyterHub's proxy as users' do (the plain
server is reached directly): the proxy's hop is part of what is measured. The side that goes
first alternates from round to round, so neither always runs on caches the other just
warmed. Timings on a shared machine are noisy: compare the ratios, not the absolute figures.
Everything made (the hub, its instance's container and storage, the copy containers, which
share the hub's name prefix) is removed at the end, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import http.server
import logging
import os
import shutil
import statistics
import sys
import threading
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import requests  # noqa: E402

from benchmarks.bench_jobs import percentile, run_main, runs_text, wind_down  # noqa: E402
from hub.settings import load_settings  # noqa: E402
from images.catalog import load_catalog  # noqa: E402
from inference_bridge.model_files import ModelFolders  # noqa: E402
from inference_bridge.storage_copy import EngineStorageCopier  # noqa: E402
from tests.platform import Hub, UserClient, run_code  # noqa: E402

log = logging.getLogger("bench_gallery")

USER = "bencher"
INSTANCE = "nb"
CASE = "cases/bench"
CHUNK = 1024 * 1024
NOTEBOOK = """{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
 {"cell_type": "markdown", "id": "m", "metadata": {}, "source": "# A benchmark case"},
 {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": null, "outputs": [],
  "source": "import pandas as pd\\ndf = pd.read_csv('data/part-0.bin')"}]}"""


# --- the instance and its case ---------------------------------------------------------


def start_instance(user: UserClient) -> dict:
    user.api(
        "POST",
        f"users/{USER}/instances",
        {"name": INSTANCE, "image": "python", "flavor": "cpu.tiny", "storage_gib": 2},
    )
    deadline = time.monotonic() + 300
    while (found := user.instance(INSTANCE))["state"] != "running":
        if found["state"] == "failed" or time.monotonic() > deadline:
            raise RuntimeError(f"instance {INSTANCE}: {found['state']} {found.get('reason')}")
        time.sleep(1)
    return found


def write_case(user: UserClient, instance: dict, mib: int, files: int) -> dict[str, int]:
    """Write the case into the instance's storage from a kernel: {path in the case: size}."""
    each = mib * CHUNK // files
    code = f"""
import os
os.makedirs({CASE!r} + "/data", exist_ok=True)
open({CASE!r} + "/main.ipynb", "w").write({NOTEBOOK!r})
for i in range({files}):
    with open(f"{CASE}/data/part-{{i}}.bin", "wb") as f:
        for _ in range({each} // {CHUNK}):
            f.write(os.urandom({CHUNK}))
        f.write(os.urandom({each} % {CHUNK}))
print("written")
"""
    out = run_code(user, instance["url"], code, timeout=600)
    if out["error"] or "written" not in out["stdout"]:
        raise RuntimeError(f"writing the case failed: {out}")
    sizes = {f"data/part-{i}.bin": each for i in range(files)}
    sizes["main.ipynb"] = len(NOTEBOOK.encode())
    return sizes


# --- the gallery's side ------------------------------------------------------------------


def fetch_checked(session: requests.Session, url: str, size: int, digest: str) -> int:
    """Stream one file, hashing it; its size (RuntimeError when size or SHA-256 differ)."""
    hashed, n = hashlib.sha256(), 0
    with session.get(url, stream=True, timeout=(10, 600)) as r:
        r.raise_for_status()
        for chunk in r.iter_content(CHUNK):
            hashed.update(chunk)
            n += len(chunk)
    if n != size or hashed.hexdigest() != digest:
        raise RuntimeError(f"{url}: {n} bytes, SHA-256 {hashed.hexdigest()}; expected {digest}")
    return n


def gallery_round(user: UserClient, direct: str) -> dict:
    body = {
        "kind": "notebook",
        "title": "Benchmark case",
        "tags": ["benchmark"],
        "source": {"instance": INSTANCE, "path": CASE},
    }
    start = time.perf_counter()
    asset = user.api("POST", "gallery/assets", body)
    publish = time.perf_counter() - start
    try:
        base = f"{user.api_url}/gallery/assets/{asset['id']}/versions/1/files"
        start = time.perf_counter()
        files = user.api("GET", f"gallery/assets/{asset['id']}/versions/1/files")["files"]
        total = sum(
            fetch_checked(user.session, f"{base}/{f['path']}", f["size"], f["sha256"])
            for f in files
        )
        download = time.perf_counter() - start
        # the same downloads from the API service itself, without the proxy's hop
        base = f"{direct}/gallery/assets/{asset['id']}/versions/1/files"
        start = time.perf_counter()
        for f in files:
            fetch_checked(user.session, f"{base}/{f['path']}", f["size"], f["sha256"])
        unproxied = time.perf_counter() - start
    finally:
        user.api("DELETE", f"gallery/assets/{asset['id']}")
    return {
        "publish_s": publish,
        "download_s": download,
        "download_unproxied_s": unproxied,
        "bytes": total,
        "files": len(files),
    }


# --- the plain side ----------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class StaticServer:
    """http.server serving a folder on a free local port, in a thread."""

    def __init__(self, folder: Path):
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Plain:
    """The same copy container and a plain static download of the same bytes."""

    def __init__(self, engine_url: str, prefix: str, image: str, root: Path):
        self.copier = EngineStorageCopier(engine_url, prefix)
        self.image = image
        self.root = root
        self.session = requests.Session()

    def staging(self) -> Path:
        # made as the gallery's and the models' are: owned by the images' user
        return ModelFolders(self.root).staging(writable_by_containers=True)

    def round(self, sizes: dict[str, int]) -> dict:
        dest = self.staging()
        try:
            start = time.perf_counter()
            asyncio.run(
                self.copier.copy(USER, INSTANCE, self.image, CASE, dest, 1024**3, too_big="")
            )
            copy = time.perf_counter() - start
            # the same files the gallery lists, hashed once here (not timed: the gallery
            # side's listing carries the SHA-256s it recorded at publish)
            digests = {}
            for path in sizes:
                hashed = hashlib.sha256()
                with open(dest / path, "rb") as f:
                    while chunk := f.read(CHUNK):
                        hashed.update(chunk)
                digests[path] = hashed.hexdigest()
            server = StaticServer(dest)
            try:
                start = time.perf_counter()
                total = sum(
                    fetch_checked(self.session, f"{server.url}/{p}", sizes[p], digests[p])
                    for p in sorted(sizes)
                )
                download = time.perf_counter() - start
            finally:
                server.close()
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        return {"publish_s": copy, "download_s": download, "bytes": total, "files": len(sizes)}

    def close(self):
        asyncio.run(self.copier.close())


# --- rounds and report -------------------------------------------------------------------


def run_rounds(
    args, user: UserClient, plain: Plain, sizes: dict[str, int], direct: str
) -> list[dict]:
    log.info("warm-up round of each side, not counted")
    gallery_round(user, direct)
    plain.round(sizes)
    rounds = []
    for i in range(args.repeat):
        sides = ("gallery", "plain") if i % 2 == 0 else ("plain", "gallery")
        got = {}
        for side in sides:
            got[side] = gallery_round(user, direct) if side == "gallery" else plain.round(sizes)
            log.info(
                "round %d/%d, %s: publish %.2f s, download %.2f s",
                i + 1,
                args.repeat,
                side,
                got[side]["publish_s"],
                got[side]["download_s"],
            )
        rounds.append({"first": sides[0], **got})
    return rounds


def report(rounds: list[dict], meta: dict) -> dict:
    rep = {**meta, "first": [r["first"] for r in rounds]}
    for what in ("publish_s", "download_s", "total_s"):
        for side in ("gallery", "plain"):
            if what == "total_s":
                values = [r[side]["publish_s"] + r[side]["download_s"] for r in rounds]
            else:
                values = [r[side][what] for r in rounds]
            rep[f"{side}_{what}"] = values
            rep[f"{side}_{what.removesuffix('_s')}_median_s"] = statistics.median(values)
            rep[f"{side}_{what.removesuffix('_s')}_p95_s"] = percentile(values, 0.95)
        name = what.removesuffix("_s")
        rep[f"{name}_ratio"] = rep[f"gallery_{name}_median_s"] / rep[f"plain_{name}_median_s"]
    unproxied = [r["gallery"]["download_unproxied_s"] for r in rounds]
    rep["gallery_download_unproxied_s"] = unproxied
    rep["gallery_download_unproxied_median_s"] = statistics.median(unproxied)
    rep["download_unproxied_ratio"] = (
        rep["gallery_download_unproxied_median_s"] / rep["plain_download_median_s"]
    )
    mib = meta["bytes"] / CHUNK
    rep["gallery_download_mib_s"] = mib / rep["gallery_download_median_s"]
    rep["plain_download_mib_s"] = mib / rep["plain_download_median_s"]
    return rep


def print_report(rep: dict) -> None:
    print()
    print("=" * 78)
    print(f"Gallery: publish and download  ({rep['time']}, {rep['cpus']} CPUs, {rep['engine']})")
    print("Shared, noisy machine: compare the ratios, not the absolute figures.")
    print("-" * 78)
    print(
        f"A notebook case of {rep['bytes'] / CHUNK:.1f} MiB in {rep['files']} files, "
        f"{rep['repeat']} round(s), first side: {', '.join(rep['first'])}"
    )
    for name, label in (
        ("publish", "publish (copy out of the storage)"),
        ("download", "download all files, SHA-256 checked"),
        ("total", "both"),
    ):
        g, p = rep[f"gallery_{name}_s"], rep[f"plain_{name}_s"]
        print(f"   {label}:")
        print(
            f"      gallery median {rep[f'gallery_{name}_median_s']:.2f} s ({runs_text(g)}); "
            f"plain median {rep[f'plain_{name}_median_s']:.2f} s ({runs_text(p)}); "
            f"ratio {rep[f'{name}_ratio']:.2f}"
        )
    print(
        f"   download from the API service itself (no proxy): gallery median "
        f"{rep['gallery_download_unproxied_median_s']:.2f} s "
        f"({runs_text(rep['gallery_download_unproxied_s'])}); ratio to plain "
        f"{rep['download_unproxied_ratio']:.2f}"
    )
    print(
        f"   download throughput (median): gallery {rep['gallery_download_mib_s']:.0f} MiB/s, "
        f"plain {rep['plain_download_mib_s']:.0f} MiB/s"
    )
    print("=" * 78)


def benchmark(args, root: Path) -> dict:
    config = REPO / "workbench.toml"
    settings, _ = load_settings(config if config.exists() else None)
    engine = settings.engine()
    ref = load_catalog().get("python").ref
    try:
        docker.APIClient(base_url=engine.url, timeout=60).inspect_image(ref)
    except docker.errors.ImageNotFound:
        sys.exit(f"Image {ref} is not built; build it first (`workbench images build python`).")
    (root / "hub").mkdir()
    hub = Hub(root / "hub", engine_url=engine.url)
    log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
    started = time.monotonic()
    plain = None
    try:
        hub.start()
        user = hub.add_user(USER)
        instance = start_instance(user)
        log.info("writing a case of %d MiB in %d data files", args.mib, args.files)
        sizes = write_case(user, instance, args.mib, args.files)
        # the plain side's staging folder is on the same disk as the gallery's
        plain = Plain(engine.url, hub.prefix, ref, hub.root / "data" / "plain")
        port = tomllib.loads(hub.config.read_text())["workbench"]["service_port"]
        direct = f"http://127.0.0.1:{port}/services/workbench/api"
        rounds = run_rounds(args, user, plain, sizes, direct)
        meta = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "engine": engine.kind,
            "mib": args.mib,
            "files": len(sizes),
            "bytes": sum(sizes.values()),
            "repeat": args.repeat,
        }
        rep = report(rounds, meta)
        rep["rounds"] = rounds
        rep["seconds"] = round(time.monotonic() - started, 1)
        return rep
    finally:
        if plain is not None:
            plain.close()
        wind_down(hub, engine, args.hub_log)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mib", type=int, default=50, help="MiB of data in the case (default 50)")
    p.add_argument("--files", type=int, default=5, help="data files (default 5)")
    p.add_argument("--repeat", type=int, default=3, help="rounds of both sides (default 3)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    if args.mib < 1 or args.files < 1 or args.repeat < 1:
        p.error("--mib, --files and --repeat must be at least 1")
    return args


def main(argv=None) -> int:
    return run_main(parse_args(argv), benchmark, print_report, "gallery")


if __name__ == "__main__":
    sys.exit(main())
