"""The hub's and the platform API's answers, and the auto-stop round, with many running instances.

Run from the repository root (the image must be built, e.g. by `make test`):

    .venv/bin/python benchmarks/bench_hub_scale.py [--users 100] [--clients 10] [--json out.json]

On one real hub (tests.platform.Hub: JupyterHub, proxy and platform API in a temporary
folder) and the local engine, the benchmark grows a team: an administrator adds users
through JupyterHub's API and gives each an API token (as the admin page does), and each user
creates and starts one instance of ``--image`` (default python, flavor cpu.tiny) through the
platform API (WorkbenchClient.create_instance), ``--start-concurrency`` (10) at a time. No
setting or quota needs raising for this: each user holds one instance.

At 1 running instance (the baseline) and at N/4, N/2 and N (25, 50, 100 by default) it
measures, in this process:

* latency of the calls a panel, the CLI and the home page repeat: the platform API's
  instance list and one instance's status, with the user's own token and with an
  administrator's; the default workspace's instances (everyone's, as an administrator
  lists them); JupyterHub's ``GET /hub/api/users?limit=200`` (admin: every user with their
  servers in one answer, as the auto-stop round and the admin page read them) and
  ``GET /hub/api/users/{name}`` with the user's own token. ``--clients`` (10) concurrent
  clients each send their next request as soon as their last one is answered, one call at a
  time, ``--requests`` (200) requests per call spread over the users in turn
  (``--requests-all``, 50, of the calls that answer every user), after a warm-up of one
  request per user and URL (the platform API keeps a token's identity for 5 minutes: a
  client that polls is answered from that cache). The hub's user list is also measured
  from one client alone (one admin page at a time). p50, p95 and max in seconds, and the
  requests the platform service made to JupyterHub's API per call (counted in the hub's
  log); target p95 < 1 s for each call at every N.
* the auto-stop round: features.instances.lifecycle.Lifecycle.check(), the function the
  platform service's loop calls every lifecycle_interval_seconds, built here as the service
  builds it (InstanceManager, LiveOptionsStore on the platform database, JupyterHub's API
  with an administrator's token) and called ``--rounds`` (5) times after one warm-up round:
  the median time per round, and per round the hub requests, SQL statements and engine
  calls it makes. Target: time per instance at N no more than 1.5 times that at N/4 (no
  worse than linear, with noise). No instance is idle long enough to be stopped.

Everything it made (instances with their storage, users, the hub, a Podman service it had to
start) is removed at the end, also on errors, Ctrl-C and SIGTERM: the users' instances are
stopped and deleted and the users deleted through the APIs, then whatever is left on the
engine under the hub's container prefix is removed. The peak of the machine's memory in use
(MemTotal - MemAvailable) is sampled every second and reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402
import httpx  # noqa: E402
import requests  # noqa: E402
from sqlalchemy import event  # noqa: E402
from workbench import AsyncWorkbenchClient, WorkbenchClient  # noqa: E402

from benchmarks.bench_spawn import (  # noqa: E402
    CONTAINERS_CONF,
    EngineSession,
    _cleanup,
    _raise_interrupt,
    check_image,
    image_ref,
    percentile,
)
from features.instances.lifecycle import Lifecycle  # noqa: E402
from features.instances.live_options import LiveOptionsStore  # noqa: E402
from features.instances.manager import InstanceManager  # noqa: E402
from hub.db import Database, database_url  # noqa: E402
from hub.settings import load_settings  # noqa: E402
from spawner.options import make_policy  # noqa: E402
from tests.platform import Hub  # noqa: E402

log = logging.getLogger("bench_hub_scale")

TARGET_P95_S = 1.0
TARGET_LINEAR = 1.5
INSTANCE = "scale"
USER_PREFIX = "scale"
API = "/services/workbench/api"
# (label, whose token, path, concurrent clients: None for --clients); "own" calls use the
# user's token, "admin" the administrator's; {user} and {name} are filled per request
CALLS = (
    ("platform list (own)", "own", API + "/users/{user}/instances", None),
    ("platform status (own)", "own", API + "/users/{user}/instances/{name}", None),
    ("platform list (admin)", "admin", API + "/users/{user}/instances", None),
    ("platform status (admin)", "admin", API + "/users/{user}/instances/{name}", None),
    ("workspace list (admin, all)", "admin", API + "/workspaces/default/instances", None),
    ("hub users (admin, all)", "admin", "/hub/api/users?limit=200", None),
    ("hub users (admin, all)", "admin", "/hub/api/users?limit=200", 1),
    ("hub user (own token)", "own", "/hub/api/users/{user}", None),
)
# a line of the hub's log for a request of the platform service to JupyterHub's API
SERVICE_REQUEST = re.compile(r"\] \d{3} \w+ /hub/api/\S+ \(workbench@[^)]*\) ([\d.]+)ms")


# --- the machine ------------------------------------------------------------------------


class MemoryPeak:
    """Samples the machine's memory in use (MemTotal - MemAvailable) every second."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-peak", daemon=True)

    @staticmethod
    def meminfo() -> dict[str, int]:
        fields = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = int(value.split()[0]) * 1024
        return fields

    def used(self) -> int:
        info = self.meminfo()
        return info["MemTotal"] - info["MemAvailable"]

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.used())
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


def machine(dc: docker.APIClient) -> dict:
    """What the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        engine = dc.version()
        engine = f"{engine.get('Components', [{}])[0].get('Name', 'engine')} {engine['Version']}"
    except Exception:  # noqa: BLE001 - only a description
        engine = "unknown engine"
    import jupyterhub

    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(MemoryPeak.meminfo()["MemTotal"] / 1024**3, 1),
        "engine": engine,
        "jupyterhub": jupyterhub.__version__,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- the team ---------------------------------------------------------------------------


class Team:
    """Users of one hub, each with an API token and (once started) one running instance."""

    def __init__(
        self,
        hub: Hub,
        admin_token: str,
        image: str,
        flavor: str,
        concurrency: int,
        run: bool = True,
    ):
        self.hub = hub
        self.run = run  # False: instances are created stopped (no containers)
        self.admin_token = admin_token
        self.image = image
        self.flavor = flavor
        self.concurrency = concurrency
        self.tokens: dict[str, str] = {}  # user -> their API token
        self.running: list[str] = []  # users whose instance runs (or exists, run=False)
        self.admin = requests.Session()
        self.admin.headers["Authorization"] = f"token {admin_token}"

    def _hub(self, method: str, path: str, **kwargs) -> requests.Response:
        r = self.admin.request(method, f"{self.hub.url}/hub/api{path}", timeout=120, **kwargs)
        if r.status_code >= 400:
            raise RuntimeError(f"{method} /hub/api{path}: HTTP {r.status_code} {r.text[:300]}")
        return r

    def add_users(self, count: int):
        """Have `count` users in all, each with an API token of their own."""
        names = [f"{USER_PREFIX}{i:03d}" for i in range(len(self.tokens), count)]
        if not names:
            return
        self._hub("POST", "/users", json={"usernames": names})
        for name in names:
            r = self._hub(
                "POST",
                f"/users/{quote(name)}/tokens",
                json={"note": "bench_hub_scale", "expires_in": 4 * 3600},
            )
            self.tokens[name] = r.json()["token"]

    def client(self, user: str) -> WorkbenchClient:
        return WorkbenchClient(self.hub.url, self.tokens[user], timeout=300)

    def start(self, count: int) -> float:
        """Have `count` users with a running instance; the new ones start
        `self.concurrency` at a time, each through the platform API with its own token.
        Seconds the starts took."""
        self.add_users(count)
        todo = [u for u in list(self.tokens)[:count] if u not in self.running]
        if not todo:
            return 0.0
        started = time.perf_counter()

        def create(user: str):
            self.client(user).create_instance(
                INSTANCE, image=self.image, flavor=self.flavor, start=self.run
            )
            self.running.append(user)

        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(create, todo))
        took = time.perf_counter() - started
        log.info(
            "%d instances %s (%d in %.0f s)",
            len(self.running),
            "running" if self.run else "created, stopped",
            len(todo),
            took,
        )
        return took

    def remove(self):
        """Stop and delete every instance and delete every user, through the APIs."""

        def remove(user: str):
            try:
                client = self.client(user)
                client.stop_instance(INSTANCE)
                client.delete_instance(INSTANCE)
            except Exception as e:  # noqa: BLE001 - the engine sweep after removes what is left
                log.warning("cleanup: instance of %s: %s", user, e)
            try:
                self._hub("DELETE", f"/users/{quote(user)}")
            except Exception as e:  # noqa: BLE001 - the hub's folder goes with the run
                log.warning("cleanup: user %s: %s", user, e)

        if not self.tokens:
            return
        log.info("removing %d users and their instances", len(self.tokens))
        with ThreadPoolExecutor(self.concurrency) as pool:
            list(pool.map(remove, list(self.tokens)))
        self.tokens.clear()
        self.running.clear()


# --- latency of the API -----------------------------------------------------------------


async def _load(url_tokens: list[tuple[str, str]], clients: int) -> list[float]:
    """Seconds of each request, sent by `clients` concurrent clients in the given order."""
    latencies: list[float] = []
    todo = iter(url_tokens)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:

        async def client():
            for url, token in todo:  # one iterator shared: each request is sent once
                started = time.perf_counter()
                r = await http.get(url, headers={"Authorization": f"token {token}"})
                took = time.perf_counter() - started
                if r.status_code != 200:
                    raise RuntimeError(f"GET {url}: HTTP {r.status_code} {r.text[:300]}")
                latencies.append(took)

        await asyncio.gather(*(client() for _ in range(clients)))
    return latencies


def call_key(label: str, clients: int) -> str:
    return f"{label}, {clients} client{'s' if clients > 1 else ''}"


def service_requests(log_path: Path, start: int) -> tuple[int, float]:
    """Requests the platform service made to JupyterHub's API, and the milliseconds the
    hub took over them, as the hub's log has them from byte `start` on."""
    with open(log_path, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    times = [float(m.group(1)) for m in SERVICE_REQUEST.finditer(text)]
    return len(times), sum(times)


def measure_api(
    team: Team, clients: int, requests_per_call: int, requests_all: int
) -> dict[str, dict]:
    """p50/p95/max of each call in CALLS with the team's running instances, and the
    requests to the hub's API each platform API request made (from the hub's log)."""
    users = list(team.running)
    results = {}
    for label, who, path, fixed in CALLS:

        def url_token(user: str, who=who, path=path) -> tuple[str, str]:
            filled = path.format(user=quote(user, safe=""), name=INSTANCE)
            token = team.admin_token if who == "admin" else team.tokens[user]
            return f"{team.hub.url}{filled}", token

        concurrency = fixed or clients
        # warm-up: each URL with each token once (the service's token cache, connections)
        asyncio.run(_load(list(dict.fromkeys(url_token(u) for u in users)), concurrency))
        count = requests_per_call if "{user}" in path else requests_all
        calls = [url_token(users[i % len(users)]) for i in range(count)]
        log_start = team.hub.log_path.stat().st_size
        latencies = asyncio.run(_load(calls, concurrency))
        hub_requests, hub_ms = service_requests(team.hub.log_path, log_start)
        key = call_key(label, concurrency)
        results[key] = {
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
            "max": max(latencies),
            "requests": len(latencies),
            "clients": concurrency,
            "hub_requests_per_call": hub_requests / len(latencies),
            "hub_ms_per_call": hub_ms / len(latencies),
        }
        log.info(
            "N=%d %s: p50 %.3f s, p95 %.3f s, max %.3f s, %.2f hub requests a call",
            len(users),
            key,
            results[key]["p50"],
            results[key]["p95"],
            results[key]["max"],
            results[key]["hub_requests_per_call"],
        )
    return results


# --- the auto-stop round ----------------------------------------------------------------


class Counts:
    """Hub requests, SQL statements and engine calls made while counting is on."""

    def __init__(self):
        self.on = False
        self.hub = self.sql = self.engine = 0

    def reset(self):
        self.hub = self.sql = self.engine = 0


async def measure_rounds(config: Path, hub_url: str, admin_token: str, rounds: int) -> dict:
    """The auto-stop round as the platform service runs it (features.instances.setup),
    timed and counted in this process: median seconds and the counts of one round."""
    settings, _ = load_settings(config)
    db = Database(database_url(settings))
    client = AsyncWorkbenchClient(hub_url, admin_token, timeout=120)
    hub_api = client.hub_api
    hub_api.live = LiveOptionsStore(db)
    manager = InstanceManager(
        hub_api, make_policy(**settings.spawner_config()), start_timeout=settings.start_timeout
    )
    lifecycle = manager.lifecycle = Lifecycle(manager, settings)
    counts = Counts()

    def on_sql(*args):
        if counts.on:
            counts.sql += 1

    async def on_request(request):
        if counts.on:
            counts.hub += 1

    send = requests.Session.send

    def counted_send(session, *args, **kwargs):
        # docker-py, the engine's client, sends every call through requests
        if counts.on:
            counts.engine += 1
        return send(session, *args, **kwargs)

    event.listen(db.engine, "before_cursor_execute", on_sql)
    client.http.event_hooks["request"].append(on_request)
    requests.Session.send = counted_send
    times, per_round = [], []
    try:
        for i in range(rounds + 1):
            counts.reset()
            counts.on = True
            started = time.perf_counter()
            await lifecycle.check()
            took = time.perf_counter() - started
            counts.on = False
            if i:  # the first round warms connections and caches
                times.append(took)
                per_round.append((counts.hub, counts.sql, counts.engine))
    finally:
        requests.Session.send = send
        await client.http.aclose()
        db.dispose()
    hub_calls, sql, engine = per_round[-1]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "max_s": max(times),
        "hub_requests": hub_calls,
        "sql_statements": sql,
        "engine_calls": engine,
    }


# --- the report -------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_report(rep: dict):
    m = rep["machine"]
    print()
    print(
        f"{m['host']}: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gib']} GiB, "
        f"{m['engine']}, JupyterHub {m['jupyterhub']}, Python {m['python']}, {m['time']}"
    )
    print(
        f"{rep['users']} users, each one {'running' if rep['running'] else 'never started'}"
        f" instance of {rep['image']} ({rep['flavor']}); "
        f"memory in use {rep['memory_before_gib']:.1f} GiB before the instances, "
        f"{rep['memory_peak_gib']:.1f} GiB at the peak"
    )
    starts = ", ".join(f"{s:.0f} s to N={n}" for n, s in rep["start_seconds"].items())
    print(f"starts, {rep['start_concurrency']} at a time: {starts}")
    levels = [str(n) for n in rep["levels"]]
    base = rep["api"][levels[0]]
    print()
    print(
        f"API latency, seconds, {rep['requests']} requests per call and N "
        f"({rep['requests_all']} of those answering every user) from the clients named"
    )
    print(
        f"ratio: p50 against N={levels[0]}; hub/call: the platform service's requests to "
        f"JupyterHub's API per call (hub log); target p95 < {TARGET_P95_S:g} s"
    )
    print(
        f"{'call':<38} {'N':>4} {'p50':>7} {'p95':>7} {'max':>7} {'ratio':>6} {'hub/call':>8}"
        "  target"
    )
    for key in rep["api"][levels[0]]:
        for n in levels:
            st = rep["api"][n][key]
            ratio = st["p50"] / base[key]["p50"]
            ok = verdict(st["p95"] < TARGET_P95_S)
            print(
                f"{key:<38} {n:>4} {st['p50']:7.3f} {st['p95']:7.3f} {st['max']:7.3f} "
                f"{ratio:6.2f} {st['hub_requests_per_call']:8.2f}  {ok}"
            )
    print()
    print(
        f"auto-stop round (Lifecycle.check in this process), median of {rep['rounds']} rounds; "
        "counts are one round's"
    )
    print(
        f"{'N':>4} {'round ms':>9} {'ms/inst':>8} {'hub req':>8} {'SQL':>5} {'engine':>7}"
        f" {'min ms':>7} {'max ms':>7}"
    )
    for n in levels:
        st = rep["rounds_by_n"][n]
        print(
            f"{n:>4} {st['median_s'] * 1000:9.1f} {st['median_s'] * 1000 / int(n):8.2f} "
            f"{st['hub_requests']:8d} {st['sql_statements']:5d} {st['engine_calls']:7d}"
            f" {st['min_s'] * 1000:7.1f} {st['max_s'] * 1000:7.1f}"
        )
    lin = rep.get("linearity")
    if lin:
        print(
            f"time per instance N={lin['high']} : N={lin['low']} = {lin['ratio']:.2f} "
            f"(target <= {TARGET_LINEAR}: {verdict(lin['ratio'] <= TARGET_LINEAR)})"
        )
    print(f"all targets met: {'yes' if rep['targets_met'] else 'no'}")


# --- the benchmark ----------------------------------------------------------------------


def levels_of(users: int) -> list[int]:
    """1 (the baseline), then a quarter, half and all of the users."""
    return sorted({1, max(1, users // 4), max(1, users // 2), users})


def benchmark(args, root: Path, memory: MemoryPeak) -> dict:
    engines = EngineSession(root)
    hub = dc = team = None
    try:
        engine = engines.open()
        dc = docker.APIClient(base_url=engine.url, timeout=120)
        check_image(dc, image_ref(args.image))
        hub = Hub(root, engine_url=engine.url)
        log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
        hub.start()
        team = Team(
            hub,
            hub.client().token,
            args.image,
            args.flavor,
            args.start_concurrency,
            run=not args.stopped,
        )
        levels = levels_of(args.users)
        api, rounds, starts = {}, {}, {}
        memory_before = memory.used()
        for n in levels:
            starts[str(n)] = team.start(n)
            rounds[str(n)] = asyncio.run(
                measure_rounds(hub.config, hub.url, team.admin_token, args.rounds)
            )
            log.info(
                "N=%d auto-stop round: median %.1f ms (%d hub requests, %d SQL, %d engine)",
                n,
                rounds[str(n)]["median_s"] * 1000,
                rounds[str(n)]["hub_requests"],
                rounds[str(n)]["sql_statements"],
                rounds[str(n)]["engine_calls"],
            )
            api[str(n)] = measure_api(team, args.clients, args.requests, args.requests_all)
        rep = {
            "machine": machine(dc),
            "users": args.users,
            "image": args.image,
            "flavor": args.flavor,
            "clients": args.clients,
            "requests": args.requests,
            "requests_all": args.requests_all,
            "start_concurrency": args.start_concurrency,
            "running": not args.stopped,
            "rounds": args.rounds,
            "levels": levels,
            "api": api,
            "rounds_by_n": rounds,
            "start_seconds": starts,
            "memory_before_gib": memory_before / 1024**3,
        }
        low = max(1, args.users // 4)
        if low < args.users:
            per = {n: rounds[str(n)]["median_s"] / n for n in (low, args.users)}
            rep["linearity"] = {
                "low": low,
                "high": args.users,
                "ratio": per[args.users] / per[low],
            }
        return rep
    finally:
        _teardown(team, hub, dc, engines, args.hub_log)


def _teardown(team, hub, dc, engines, keep_log):
    """Remove the users and their instances through the APIs, then stop the hub and sweep the
    engine; Ctrl-C and SIGTERM are ignored meanwhile so a second one cannot cut it short."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if team is not None and hub is not None and hub.proc is not None:
            team.remove()
        _cleanup(hub, dc, engines, keep_log)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def targets_met(rep: dict) -> bool:
    api_ok = all(
        st["p95"] < TARGET_P95_S for by_call in rep["api"].values() for st in by_call.values()
    )
    lin = rep.get("linearity")
    return api_ok and (lin is None or lin["ratio"] <= TARGET_LINEAR)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=100, help="users, one instance each (100)")
    p.add_argument("--clients", type=int, default=10, help="concurrent API clients (10)")
    p.add_argument("--requests", type=int, default=200, help="requests per call and N (200)")
    p.add_argument(
        "--requests-all",
        type=int,
        default=50,
        help="requests per N of the calls that answer every user's instances (50)",
    )
    p.add_argument("--rounds", type=int, default=5, help="auto-stop rounds timed per N (5)")
    p.add_argument(
        "--start-concurrency", type=int, default=10, help="instances started at a time (10)"
    )
    p.add_argument("--image", default="python", help="catalog image (default python)")
    p.add_argument("--flavor", default="cpu.tiny", help="instances' flavor (default cpu.tiny)")
    p.add_argument(
        "--stopped",
        action="store_true",
        help="create the instances without starting them: the hub's and the platform's "
        "costs of many users and instances without the load of their containers",
    )
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    for name in ("users", "clients", "requests", "requests_all", "rounds", "start_concurrency"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    os.environ.setdefault("CONTAINERS_CONF", CONTAINERS_CONF)
    # Ctrl-C and SIGTERM end the run through the cleanup (bench_spawn.py does the same)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-hub-scale-") as tmp, MemoryPeak() as memory:
        try:
            rep = benchmark(args, Path(tmp), memory)
        except KeyboardInterrupt:
            log.warning("interrupted; cleaned up")
            return 130
        rep["memory_peak_gib"] = memory.peak / 1024**3
    log.info("peak memory in use: %.1f GiB", rep["memory_peak_gib"])
    rep["targets_met"] = targets_met(rep)
    print_report(rep)
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=2) + "\n")
        log.info("results written to %s", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
