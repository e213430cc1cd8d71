"""Training jobs through the platform against the same work done by hand on the engine.

Run from the repository root (the python and pytorch images must be built: `make images-all`):

    .venv/bin/python benchmarks/bench_jobs.py [--runs 5] [--ddp-runs 5] [--quick] [--json FILE]

It starts a real hub (tests.platform.Hub: JupyterHub, proxy and platform API on free ports)
on the local engine, signs a user up, and measures three figures:

1. Submission to first log line. Through the platform: `POST /jobs` of a one-line script
   (python image, plain runtime, --flavor, default cpu.tiny), then `GET .../logs?follow=1`,
   timed from the POST until the line the script prints arrives on the stream. Baseline:
   the same `python -c` in a plain container of the same image with the same limits (CPU
   quota, memory, user, capabilities, pids, /dev/shm), through the engine's Docker API as
   `podman run` does it (create, start, logs with follow), timed from the create call until
   the line arrives. Ratio = platform / plain; target <= 1.2. A warm-up round of each is
   not counted. The platform's own event lines ("[workbench] ... starting", "... running")
   are timed on arrival too, which splits the platform's time into admission, node start
   and log relay.
2. Two-node DDP steps per second. benchmarks/ddp_steps.py trains a small MLP with DDP
   (gloo) for --ddp-steps after a warm-up and prints `steps_per_second=` measured inside
   the script, so container start-up, rendezvous and imports are left out on both sides.
   Through the platform: pytorch image and runtime, 2 nodes of --ddp-flavor (default
   cpu.tiny). Baseline: two containers of the same image on a network made by hand (the
   same kind: bridge, isolated on Podman), the same limits, each running `torchrun
   ddp_steps.py ...` with the PET_* variables the platform sets. Ratio = platform / bare;
   target >= 0.95.
3. Log latency. A job prints --lines lines, --interval seconds apart, each carrying
   time.time() when printed; a follower of the platform's log stream (follow=1, opened at
   submission) stamps each on arrival. Latency = arrival - printed (one machine, one clock):
   median and p95 in ms. For reference, the same script in a plain container followed
   through the engine's own log stream (no target).

Rounds are interleaved and the side that goes first alternates from round to round, so
neither side always runs on caches the other just warmed. Timings on a shared machine are
noisy: compare the ratios, not the absolute figures. Everything made (the hub, its jobs'
containers and networks, the plain containers and networks, which all share the hub's name
prefix) is removed at the end, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import math
import os
import re
import shutil
import signal
import statistics
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from hub.settings import load_settings  # noqa: E402
from images.catalog import load_catalog  # noqa: E402
from spawner.engine import CONTAINERS_CONF  # noqa: E402
from spawner.flavors import Flavor, load_flavors  # noqa: E402
from tests.platform import Hub, UserClient, remove_engine_objects  # noqa: E402

log = logging.getLogger("bench_jobs")

TARGET_FIRST_LINE = 1.2  # platform / plain, at most
TARGET_DDP = 0.95  # platform / bare, at least
USER = "bencher"
EVENT_PREFIX = "[workbench] "
FIRST_LINE = "bench-first-line"
FIRST_SCRIPT = f'print("{FIRST_LINE}", flush=True)\n'
PROBE = "bench-latency"
DDP_SCRIPT = Path(__file__).parent / "ddp_steps.py"
JOB_TIMEOUT = 300.0
# what the platform's node containers get besides the flavor's CPU and memory (engine.py)
NODE_USER = "1000:100"
PIDS_LIMIT = 4096
SHM_BYTES = 256 * 1024**2
MASTER_PORT = 29400


# --- helpers --------------------------------------------------------------------------


def archive(files: dict[str, str]) -> str:
    """A base64 .tar.gz of {name: text}, as POST /jobs takes a code snapshot."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buf.getvalue()).decode()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, interpolated linearly between order statistics."""
    xs = sorted(values)
    k = (len(xs) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def runs_text(values: list[float], fmt: str = "{:.2f}") -> str:
    return ", ".join(fmt.format(v) for v in values)


@dataclass
class Line:
    """A line of a followed log and when it arrived (perf_counter and wall clock)."""

    at: float
    wall: float
    text: str


def follow(user: UserClient, name: str, node: int = 0) -> Iterator[Line]:
    """The lines of a job's node log as they arrive on the platform's follow=1 stream."""
    url = f"{user.api_url}/jobs/{USER}/{name}/versions/1/logs?node={node}&follow=1"
    with user.session.get(url, stream=True, timeout=(10, JOB_TIMEOUT)) as r:
        r.raise_for_status()
        yield from _lines(r.iter_content(chunk_size=None))


def _lines(chunks) -> Iterator[Line]:
    pending = b""
    for chunk in chunks:
        at, wall = time.perf_counter(), time.time()
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield Line(at, wall, line.decode(errors="replace"))
    if pending:
        yield Line(time.perf_counter(), time.time(), pending.decode(errors="replace"))


def engine_lines(dc: docker.APIClient, container: str) -> Iterator[Line]:
    """The lines of a container's output as they arrive on the engine's log stream."""
    yield from _lines(dc.logs(container, stream=True, follow=True, stdout=True, stderr=True))


class Bench:
    """The hub, its user, the engine, and the measurements."""

    def __init__(self, args, root: Path, hub: Hub, user: UserClient, dc: docker.APIClient):
        self.args = args
        self.root = root
        self.hub = hub
        self.user = user
        self.dc = dc
        self.podman = False
        catalog = load_catalog()
        self.python_ref = catalog.get("python").ref
        self.pytorch_ref = catalog.get("pytorch").ref
        flavors = load_flavors()
        self.flavor = flavors[args.flavor]
        self.ddp_flavor = flavors[args.ddp_flavor]
        self.serial = 0

    def name(self, kind: str) -> str:
        self.serial += 1
        return f"{kind}-{self.serial}"

    def plain_name(self, kind: str) -> str:
        return f"{self.hub.prefix}-plain-{self.name(kind)}"

    # --- the platform's side --------------------------------------------------------
    def submit(self, name: str, files: dict[str, str], entry: str, **fields) -> None:
        body = {
            "name": name,
            "source": {"kind": "file", "entry": entry, "archive": archive(files)},
            "image": "python",
            "runtime": "plain",
            "flavor": self.flavor.name,
            **fields,
        }
        self.user.api("POST", "jobs", body)

    def wait_job(self, name: str) -> dict:
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            model = self.user.api("GET", f"jobs/{USER}/{name}/versions/1")
            if model["state"] in ("succeeded", "failed", "stopped"):
                return model
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {name} still {model['state']} after {JOB_TIMEOUT:.0f} s")
            time.sleep(0.5)

    def job_log(self, name: str, node: int = 0) -> str:
        url = f"{self.user.api_url}/jobs/{USER}/{name}/versions/1/logs?node={node}"
        r = self.user.session.get(url, timeout=30)
        r.raise_for_status()
        return r.text

    def delete_job(self, name: str) -> None:
        try:
            self.user.api("DELETE", f"jobs/{USER}/{name}")
        except Exception as e:  # noqa: BLE001 - the hub's prefix cleanup removes what is left
            log.warning("could not delete job %s: %s", name, e)

    # --- the engine's side ----------------------------------------------------------
    def host_config(self, flavor: Flavor, **extra) -> dict:
        """The limits the platform gives a job's node, for a container made by hand."""
        return self.dc.create_host_config(
            mem_limit=flavor.memory,
            memswap_limit=flavor.memory,
            nano_cpus=int(flavor.cpu * 1e9),
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=PIDS_LIMIT,
            shm_size=min(SHM_BYTES, flavor.memory // 2),
            **extra,
        )

    def remove_container(self, name: str) -> None:
        # Podman refuses a forced removal of a container caught exiting ("could not be
        # stopped ... state improper"): once more a moment later; the prefix cleanup at the
        # end gets what is still left
        for attempt in (1, 2, 3):
            try:
                self.dc.remove_container(name, force=True)
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as e:
                if attempt == 3:
                    log.warning("could not remove container %s: %s", name, e)
                time.sleep(0.5)

    # --- 1. submission to first log line --------------------------------------------
    def platform_first_line(self) -> dict:
        name = self.name("first")
        files = {"first.py": FIRST_SCRIPT}
        try:
            start = time.perf_counter()
            self.submit(name, files, "first.py")
            posted = time.perf_counter() - start
            marks: dict[str, float] = {}
            first = None
            for line in follow(self.user, name):
                if line.text.startswith(EVENT_PREFIX):
                    words = line.text[len(EVENT_PREFIX) :].split()
                    # "<date> <time> message ...": the first word of the message names it
                    if len(words) > 2:
                        marks.setdefault(words[2].rstrip(":"), line.at - start)
                elif FIRST_LINE in line.text and first is None:
                    first = line.at - start
                    # read on to the end: the job is over and deleting it waits for nothing
            if first is None:
                raise RuntimeError(f"job {name} ended without its line:\n{self.job_log(name)}")
            return {
                "first_s": first,
                "post_s": posted,
                "starting_s": marks.get("starting"),
                "running_s": marks.get("running"),
            }
        finally:
            self.delete_job(name)

    def plain_first_line(self) -> dict:
        name = self.plain_name("first")
        try:
            start = time.perf_counter()
            container = self.dc.create_container(
                self.python_ref,
                command=["python", "-c", FIRST_SCRIPT],
                name=name,
                user=NODE_USER,
                environment={"PYTHONUNBUFFERED": "1"},
                host_config=self.host_config(self.flavor),
            )
            self.dc.start(container["Id"])
            started = time.perf_counter() - start
            for line in engine_lines(self.dc, container["Id"]):
                if FIRST_LINE in line.text:
                    return {"first_s": line.at - start, "started_s": started}
            raise RuntimeError(f"plain container {name} ended without printing its line")
        finally:
            self.remove_container(name)

    def first_line(self) -> dict:
        runs = self.args.runs
        platform, plain = [], []
        for i in range(runs + 1):
            order = (
                (self.platform_first_line, self.plain_first_line)
                if i % 2 == 0
                else (self.plain_first_line, self.platform_first_line)
            )
            got = {}
            for measure in order:
                got[measure] = measure()
            p, b = got[self.platform_first_line], got[self.plain_first_line]
            label = "warm-up" if i == 0 else f"round {i}/{runs}"
            log.info(
                "first line, %s: platform %.2f s (POST %.2f, starting %s, running %s), "
                "plain %.2f s (create+start %.2f)",
                label,
                p["first_s"],
                p["post_s"],
                _opt(p["starting_s"]),
                _opt(p["running_s"]),
                b["first_s"],
                b["started_s"],
            )
            if i:
                platform.append(p)
                plain.append(b)
        return {"platform": platform, "plain": plain}

    # --- 2. two-node DDP steps per second -------------------------------------------
    def ddp_args(self) -> list[str]:
        return ["--steps", str(self.args.ddp_steps), "--warmup", str(self.args.ddp_warmup)]

    def platform_ddp(self) -> float:
        name = self.name("ddp")
        try:
            self.submit(
                name,
                {"ddp_steps.py": DDP_SCRIPT.read_text()},
                "ddp_steps.py",
                image="pytorch",
                runtime="pytorch",
                nodes=2,
                flavor=self.ddp_flavor.name,
                hyperparameters={"steps": self.args.ddp_steps, "warmup": self.args.ddp_warmup},
            )
            model = self.wait_job(name)
            text = self.job_log(name)
            if model["state"] != "succeeded":
                raise RuntimeError(f"DDP job {name} {model['state']}: {model['reason']}\n{text}")
            return _steps_per_second(text, f"job {name}")
        finally:
            self.delete_job(name)

    def bare_ddp(self) -> float:
        base = self.plain_name("ddp")
        network = f"{base}-net"
        code = self.root / "ddp-code"
        if not code.exists():
            code.mkdir(mode=0o755)
            shutil.copyfile(DDP_SCRIPT, code / DDP_SCRIPT.name)
            (code / DDP_SCRIPT.name).chmod(0o644)
        hosts = [f"{base}-{rank}" for rank in range(2)]
        try:
            options = {"isolate": "true"} if self.podman else {}
            self.dc.create_network(network, driver="bridge", options=options)
            for rank, host in enumerate(hosts):
                env = {
                    "PET_NNODES": "2",
                    "PET_NPROC_PER_NODE": "1",
                    "PET_NODE_RANK": str(rank),
                    "PET_MASTER_ADDR": hosts[0],
                    "PET_MASTER_PORT": str(MASTER_PORT),
                    "WORKBENCH_DIST_BACKEND": "gloo",
                    "PYTHONUNBUFFERED": "1",
                }
                self.dc.create_container(
                    self.pytorch_ref,
                    command=["torchrun", DDP_SCRIPT.name, *self.ddp_args()],
                    name=host,
                    hostname=host,
                    user=NODE_USER,
                    working_dir="/job/code",
                    environment=env,
                    host_config=self.host_config(
                        self.ddp_flavor,
                        binds={str(code): {"bind": "/job/code", "mode": "ro"}},
                        network_mode=network,
                    ),
                    networking_config=self.dc.create_networking_config(
                        {network: self.dc.create_endpoint_config(aliases=[host])}
                    ),
                )
            for host in hosts:
                self.dc.start(host)
            codes = [self.dc.wait(host, timeout=JOB_TIMEOUT)["StatusCode"] for host in hosts]
            text = self.dc.logs(hosts[0], stdout=True, stderr=True).decode(errors="replace")
            if any(codes):
                raise RuntimeError(f"bare torchrun exited {codes}:\n{text[-3000:]}")
            return _steps_per_second(text, "bare torchrun")
        finally:
            for host in hosts:
                self.remove_container(host)
            try:
                self.dc.remove_network(network)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:  # the prefix cleanup at the end retries
                log.warning("could not remove network %s: %s", network, e)

    def ddp(self) -> dict:
        runs = self.args.ddp_runs
        platform, bare = [], []
        for i in range(runs):
            first_platform = i % 2 == 0
            if first_platform:
                platform.append(self.platform_ddp())
            bare.append(self.bare_ddp())
            if not first_platform:
                platform.append(self.platform_ddp())
            log.info(
                "DDP, round %d/%d: platform %.1f steps/s, bare %.1f steps/s",
                i + 1,
                runs,
                platform[-1],
                bare[-1],
            )
        return {"platform": platform, "bare": bare}

    # --- 3. log latency -------------------------------------------------------------
    def probe_script(self) -> str:
        return (
            "import time\n"
            f"for i in range({self.args.lines}):\n"
            f'    print(f"{PROBE} {{i}} {{time.time():.6f}}", flush=True)\n'
            f"    time.sleep({self.args.interval})\n"
        )

    def _latencies(self, lines: Iterator[Line]) -> list[float]:
        out = []
        for line in lines:
            words = line.text.split()
            if len(words) == 3 and words[0] == PROBE:
                out.append(line.wall - float(words[2]))
                if len(out) == self.args.lines:
                    break
        return out

    def platform_latency(self) -> list[float]:
        name = self.name("latency")
        try:
            self.submit(name, {"probe.py": self.probe_script()}, "probe.py")
            got = self._latencies(follow(self.user, name))
        finally:
            self.delete_job(name)
        if len(got) != self.args.lines:
            raise RuntimeError(f"{len(got)} of {self.args.lines} probe lines arrived")
        return got

    def plain_latency(self) -> list[float]:
        name = self.plain_name("latency")
        try:
            container = self.dc.create_container(
                self.python_ref,
                command=["python", "-c", self.probe_script()],
                name=name,
                user=NODE_USER,
                environment={"PYTHONUNBUFFERED": "1"},
                host_config=self.host_config(self.flavor),
            )
            self.dc.start(container["Id"])
            got = self._latencies(engine_lines(self.dc, container["Id"]))
        finally:
            self.remove_container(name)
        if len(got) != self.args.lines:
            raise RuntimeError(f"{len(got)} of {self.args.lines} probe lines arrived")
        return got

    def latency(self) -> dict:
        platform = self.platform_latency()
        log.info("log latency: platform median %.1f ms", statistics.median(platform) * 1e3)
        plain = self.plain_latency()
        log.info("log latency: engine median %.1f ms", statistics.median(plain) * 1e3)
        return {"platform": platform, "plain": plain}


def _opt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _steps_per_second(text: str, what: str) -> float:
    found = re.findall(r"rank=0 .*steps_per_second=([0-9.]+)", text)
    if not found:
        raise RuntimeError(f"{what} printed no steps_per_second:\n{text[-3000:]}")
    return float(found[-1])


# --- report ---------------------------------------------------------------------------


def report(results: dict, meta: dict) -> dict:
    first, ddp, lat = results["first_line"], results["ddp"], results["latency"]
    p_first = [r["first_s"] for r in first["platform"]]
    b_first = [r["first_s"] for r in first["plain"]]
    first_ratio = statistics.median(p_first) / statistics.median(b_first)
    ddp_ratio = statistics.median(ddp["platform"]) / statistics.median(ddp["bare"])
    return {
        **meta,
        "first_line": {
            "platform_s": p_first,
            "plain_s": b_first,
            "platform_median_s": statistics.median(p_first),
            "plain_median_s": statistics.median(b_first),
            "ratio": first_ratio,
            "target": TARGET_FIRST_LINE,
            "met": first_ratio <= TARGET_FIRST_LINE,
            "platform_phases_median_s": {
                key: statistics.median(v)
                for key in ("post_s", "starting_s", "running_s")
                if (v := [r[key] for r in first["platform"] if r[key] is not None])
            },
            "plain_create_start_median_s": statistics.median(
                r["started_s"] for r in first["plain"]
            ),
        },
        "ddp": {
            "platform_steps_per_s": ddp["platform"],
            "bare_steps_per_s": ddp["bare"],
            "platform_median": statistics.median(ddp["platform"]),
            "bare_median": statistics.median(ddp["bare"]),
            "ratio": ddp_ratio,
            "target": TARGET_DDP,
            "met": ddp_ratio >= TARGET_DDP,
        },
        "latency": {
            side: {
                "median_ms": statistics.median(values) * 1e3,
                "p95_ms": percentile(values, 0.95) * 1e3,
                "max_ms": max(values) * 1e3,
                "lines": len(values),
            }
            for side, values in (("platform", lat["platform"]), ("plain", lat["plain"]))
        },
    }


def print_report(rep: dict) -> None:
    f, d, lat = rep["first_line"], rep["ddp"], rep["latency"]
    phases = f["platform_phases_median_s"]
    verdict = {True: "meets", False: "misses"}
    print()
    print("=" * 78)
    print(
        f"Training jobs: platform against the engine by hand  ({rep['time']}, "
        f"{rep['cpus']} CPUs, engine {rep['engine']})"
    )
    print("Shared, noisy machine: compare the ratios, not the absolute figures.")
    print("-" * 78)
    print(
        f"1. submission to first log line ({f['runs']} rounds each, {rep['flavor']}, "
        "python image, plain runtime)"
    )
    print(
        f"   platform (POST /jobs + logs follow=1): median {f['platform_median_s']:.2f} s  "
        f"({runs_text(f['platform_s'])})"
    )
    print(
        f"   plain container (create+start+logs):   median {f['plain_median_s']:.2f} s  "
        f"({runs_text(f['plain_s'])})"
    )
    marks = [("POST answered", "post_s"), ("'starting'", "starting_s"), ("'running'", "running_s")]
    print(
        "   platform phases (median s from the POST): "
        + ", ".join(f"{label} {phases[key]:.2f}" for label, key in marks if key in phases)
        + f"; plain create+start took {f['plain_create_start_median_s']:.2f}"
    )
    print(
        f"   ratio platform / plain {f['ratio']:.2f}  "
        f"({verdict[f['met']]} the target of <= {f['target']})"
    )
    print(
        f"2. two-node DDP steps per second ({d['runs']} rounds each, 2 x {rep['ddp_flavor']}, "
        f"{rep['ddp_steps']} steps after {rep['ddp_warmup']})"
    )
    print(
        f"   platform (pytorch runtime): median {d['platform_median']:.1f}  "
        f"({runs_text(d['platform_steps_per_s'], '{:.1f}')})"
    )
    print(
        f"   bare torchrun by hand:      median {d['bare_median']:.1f}  "
        f"({runs_text(d['bare_steps_per_s'], '{:.1f}')})"
    )
    print(
        f"   ratio platform / bare {d['ratio']:.2f}  "
        f"({verdict[d['met']]} the target of >= {d['target']})"
    )
    p, b = lat["platform"], lat["plain"]
    print(
        f"3. log latency ({p['lines']} lines, {rep['interval']} s apart, print to arrival on "
        "a follower)"
    )
    print(
        f"   platform logs follow=1: median {p['median_ms']:.1f} ms, p95 {p['p95_ms']:.1f} ms, "
        f"max {p['max_ms']:.1f} ms"
    )
    print(
        f"   engine's own log stream (reference): median {b['median_ms']:.1f} ms, "
        f"p95 {b['p95_ms']:.1f} ms, max {b['max_ms']:.1f} ms"
    )
    print("=" * 78)


# --- setup and teardown ---------------------------------------------------------------


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def check_images(dc: docker.APIClient) -> None:
    catalog = load_catalog()
    for name in ("python", "pytorch"):
        ref = catalog.get(name).ref
        try:
            dc.inspect_image(ref)
        except docker.errors.ImageNotFound:
            sys.exit(f"Image {ref} is not built; build it first (`workbench images build {name}`).")


def benchmark(args, root: Path) -> dict:
    config = REPO / "workbench.toml"
    settings, _ = load_settings(config if config.exists() else None)
    engine = settings.engine()
    dc = docker.APIClient(base_url=engine.url, timeout=JOB_TIMEOUT)
    check_images(dc)
    (root / "hub").mkdir()
    hub = Hub(root / "hub", engine_url=engine.url)
    log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
    started = time.monotonic()
    try:
        hub.start()
        user = hub.add_user(USER)
        bench = Bench(args, root, hub, user, dc)
        bench.podman = engine.kind == "podman"
        results = {
            "first_line": bench.first_line(),
            "latency": bench.latency(),
            "ddp": bench.ddp(),
        }
        meta = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "engine": engine.kind,
            "flavor": bench.flavor.name,
            "ddp_flavor": bench.ddp_flavor.name,
            "ddp_steps": args.ddp_steps,
            "ddp_warmup": args.ddp_warmup,
            "interval": args.interval,
            "seconds": round(time.monotonic() - started, 1),
        }
        rep = report(results, meta)
        rep["first_line"]["runs"] = args.runs
        rep["ddp"]["runs"] = args.ddp_runs
        return rep
    finally:
        wind_down(hub, engine, args.hub_log)


def wind_down(hub, engine, hub_log: str | None = None) -> None:
    """Stop the hub, remove what it and the plain runs made, keep the hub's log where asked,
    stop what the benchmark started on the engine; Ctrl-C cannot cut it short."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        hub.stop()
        _remove_objects(engine.url, hub.prefix)
        if hub_log and hub.log_path.exists():
            shutil.copyfile(hub.log_path, hub_log)
        engine.stop_started()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _remove_objects(url: str, prefix: str) -> None:
    """Remove what the hub and the plain runs made; a listing can fail while other
    processes remove images on the same engine: once more, then say what is left."""
    for attempt in (1, 2):
        try:
            remove_engine_objects(url, prefix)
            return
        except docker.errors.APIError as e:
            if attempt == 2:
                log.warning("cleanup of %s* incomplete: %s", prefix, e)
            time.sleep(2)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="first-line rounds of each (default 5)")
    p.add_argument("--ddp-runs", type=int, default=5, help="DDP rounds of each (default 5)")
    p.add_argument("--ddp-steps", type=int, default=1000, help="timed DDP steps (default 1000)")
    p.add_argument("--ddp-warmup", type=int, default=20, help="DDP warm-up steps (default 20)")
    p.add_argument("--lines", type=int, default=50, help="latency probe lines (default 50)")
    p.add_argument(
        "--interval", type=float, default=0.1, help="seconds between probe lines (default 0.1)"
    )
    p.add_argument("--flavor", default="cpu.tiny", help="flavor of figures 1 and 3")
    p.add_argument("--ddp-flavor", default="cpu.tiny", help="flavor of each DDP node")
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer runs: 2 first-line rounds, 1 DDP round of 300 steps, 20 probe lines",
    )
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.ddp_runs, args.ddp_steps, args.lines = 2, 1, 300, 20
    for name in ("runs", "ddp_runs", "ddp_steps", "lines"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def run_main(args, benchmark, print_report, prefix: str) -> int:
    """What every benchmark's main() does around its measure: logs, Ctrl-C and SIGTERM
    ending it through its clean-up, a temporary folder, the report and --json."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the client's line per request
    os.environ.setdefault("CONTAINERS_CONF", CONTAINERS_CONF)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as tmp:
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


def main(argv=None) -> int:
    return run_main(parse_args(argv), benchmark, print_report, "jobs")


if __name__ == "__main__":
    sys.exit(main())
