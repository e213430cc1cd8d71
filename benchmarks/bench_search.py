"""A hyperparameter search's own overhead: its trials against the same job runs submitted by hand.

Run from the repository root (the python image must be built: `make images`):

    .venv/bin/python benchmarks/bench_search.py [--trials 8] [--parallel 2] [--repeat 1]
        [--json FILE]

It starts a real hub (tests.platform.Hub: JupyterHub, proxy and platform API on free ports)
on the local engine, signs a user up, and runs two sides over the same script
(tests/training_bridge/experiments/job_quadratic.py in the python image, --steps short steps
of --sleep seconds, flavor --flavor):

- search: `POST /searches` of --trials trials, --parallel at a time (sampler --sampler with a
  fixed seed, no pruning, so every trial runs all its steps), timed from the POST until
  `GET /searches/{id}` says it completed.
- direct: the same number of runs as versions of one job, submitted by this process (`POST
  /jobs`, then `POST /jobs/.../versions`) --parallel at a time, a new one as soon as a run it
  polls (every --poll seconds) has ended, with the parameters a search chose (those of the
  search run last: a warm-up search, not counted, runs first), timed from the first POST
  until the last run ended.

Ratio = search / direct (medians over --repeat rounds); target <= 1.1. The side that goes
first alternates from round to round, so neither always runs on caches the other just warmed.
Also shown, from the runs' own times on the hub: each run's time from start to end (the same
work on both sides), and the slot gap: how long after a run ended the run that took its slot
was made (the search loop's reaction against this process's). Timings on a shared machine
are noisy: compare the ratio, not the absolute figures. Everything made (the hub, its jobs'
containers, which share the hub's name prefix) is removed at the end, also on errors, Ctrl-C
and SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import docker  # noqa: E402

from benchmarks.bench_jobs import (  # noqa: E402
    archive,
    percentile,
    run_main,
    runs_text,
    wind_down,
)
from hub.settings import load_settings  # noqa: E402
from images.catalog import load_catalog  # noqa: E402
from tests.platform import Hub, UserClient  # noqa: E402

log = logging.getLogger("bench_search")

TARGET_RATIO = 1.1  # search / direct, at most
USER = "bencher"
SCRIPT = REPO / "tests" / "training_bridge" / "experiments" / "job_quadratic.py"
ENTRY = "quadratic.py"
SPACE = {
    "x": {"type": "float", "low": -1, "high": 1},
    "lr": {"type": "float", "low": 1e-4, "high": 1, "log": True},
    "opt": {"type": "categorical", "choices": ["sgd", "adam"]},
}
FINISHED = ("succeeded", "failed", "stopped")
SEARCH_ACTIVE = ("running", "stopping")
TIMEOUT = 900.0  # one side of one round


def seconds_of(iso: str) -> float:
    """A time of the API (ISO 8601) in seconds since the epoch."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def run_times(versions: list[dict]) -> list[float]:
    """Each run's seconds from its start to its end, as the hub recorded them."""
    return [
        seconds_of(v["finished"]) - seconds_of(v["started"])
        for v in versions
        if v.get("started") and v.get("finished")
    ]


def slot_gaps(versions: list[dict], parallel: int) -> list[float]:
    """How long after a run ended the run that took its slot was made: the k-th run made
    after the first `parallel` follows the k-th run to end."""
    made = sorted(seconds_of(v["created"]) for v in versions)
    ended = sorted(seconds_of(v["finished"]) for v in versions if v.get("finished"))
    return [c - e for c, e in zip(made[parallel:], ended, strict=False)]


class Bench:
    """The hub's user, the script's source, and the two sides of a round."""

    def __init__(self, args, user: UserClient):
        self.args = args
        self.user = user
        self.source = {
            "kind": "file",
            "entry": ENTRY,
            "archive": archive({ENTRY: SCRIPT.read_text()}),
        }
        self.fixed = {"steps": args.steps, "sleep": args.sleep}
        self.params: list[dict] = []  # the trials' parameters of the search run last

    def job_fields(self) -> dict:
        return {"source": self.source, "image": "python", "flavor": self.args.flavor}

    def delete(self, path: str) -> None:
        try:
            self.user.api("DELETE", path)
        except Exception as e:  # noqa: BLE001 - the hub's prefix cleanup removes what is left
            log.warning("could not delete %s: %s", path, e)

    def versions(self, job: str) -> list[dict]:
        return self.user.api("GET", f"jobs/{USER}/{job}")["versions"]

    # --- the search's side ---------------------------------------------------------------
    def search(self, job: str) -> dict:
        a = self.args
        body = {
            "job": job,
            **self.job_fields(),
            "hyperparameters": self.fixed,
            "space": SPACE,
            "objective": {"metric": "loss", "direction": "minimize"},
            "trials": a.trials,
            "parallel": a.parallel,
            "sampler": {"type": a.sampler, "seed": a.seed},
            "pruner": "none",
        }
        search_id = None
        try:
            start = time.perf_counter()
            search_id = self.user.api("POST", "searches", body)["id"]
            deadline = time.monotonic() + TIMEOUT
            while True:
                model = self.user.api("GET", f"searches/{search_id}")
                if model["state"] not in SEARCH_ACTIVE:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"search {search_id} still {model['state']}")
                time.sleep(a.poll)
            total = time.perf_counter() - start
            trials = sorted(model["trials"], key=lambda t: t["number"])
            bad = [t for t in trials if t["state"] != "complete"]
            if model["state"] != "completed" or len(trials) != a.trials or bad:
                raise RuntimeError(
                    f"search {search_id} {model['state']} ({model['reason']}); trials: "
                    + ", ".join(f"{t['number']} {t['state']} {t['reason']}" for t in trials)
                )
            self.params = [t["params"] for t in trials]
            versions = self.versions(job)
            return {"total_s": total, **self.figures(versions)}
        finally:
            if search_id is not None:
                try:
                    # a search cut short (an error, Ctrl-C) is stopped before it is deleted
                    self.user.api("POST", f"searches/{search_id}/stop")
                except Exception:  # noqa: BLE001, S110 - it ended already: 409
                    pass
                self.delete(f"searches/{search_id}")
            self.delete(f"jobs/{USER}/{job}")

    # --- the direct side -----------------------------------------------------------------
    def submit(self, job: str, params: dict, first: bool) -> int:
        hyperparameters = {**self.fixed, **params}
        if first:
            body = {"name": job, **self.job_fields(), "hyperparameters": hyperparameters}
            return self.user.api("POST", "jobs", body)["version"]
        path = f"jobs/{USER}/{job}/versions"
        return self.user.api("POST", path, {"hyperparameters": hyperparameters})["version"]

    def direct(self, job: str) -> dict:
        a = self.args
        waiting = list(self.params)
        running: set[int] = set()
        ended: dict[int, dict] = {}
        try:
            start = time.perf_counter()
            deadline = time.monotonic() + TIMEOUT
            while waiting or running:
                while waiting and len(running) < a.parallel:
                    running.add(self.submit(job, waiting.pop(0), first=not (running or ended)))
                time.sleep(a.poll)
                for version in sorted(running):
                    model = self.user.api("GET", f"jobs/{USER}/{job}/versions/{version}")
                    if model["state"] in FINISHED:
                        running.discard(version)
                        ended[version] = model
                if time.monotonic() > deadline:
                    raise TimeoutError(f"job {job}: runs {sorted(running)} still going")
            total = time.perf_counter() - start
            bad = [m for m in ended.values() if m["state"] != "succeeded"]
            if bad:
                raise RuntimeError(
                    f"job {job}: "
                    + ", ".join(f"v{m['version']} {m['state']} {m['reason']}" for m in bad)
                )
            return {"total_s": total, **self.figures(list(ended.values()))}
        finally:
            self.delete(f"jobs/{USER}/{job}")

    def figures(self, versions: list[dict]) -> dict:
        return {
            "run_s": run_times(versions),
            "gap_s": slot_gaps(versions, self.args.parallel),
        }

    # --- rounds ----------------------------------------------------------------------------
    def run(self) -> dict:
        a = self.args
        log.info(
            "warm-up search (%d trials, %d at a time), not counted: it picks the direct "
            "side's first parameters",
            a.trials,
            a.parallel,
        )
        warm = self.search("warmup-search")
        log.info("warm-up search took %.2f s", warm["total_s"])
        rounds = []
        for i in range(a.repeat):
            search_first = i % 2 == 0
            sides = ("search", "direct") if search_first else ("direct", "search")
            got = {}
            for side in sides:
                if side == "search":
                    got[side] = self.search(f"search-{i + 1}")
                else:
                    got[side] = self.direct(f"direct-{i + 1}")
                log.info("round %d/%d, %s: %.2f s", i + 1, a.repeat, side, got[side]["total_s"])
            rounds.append({"first": sides[0], **got})
        return {"rounds": rounds}


# --- report ---------------------------------------------------------------------------


def summary(values: list[float]) -> dict:
    if not values:
        return {"median_s": None, "p95_s": None, "n": 0}
    return {
        "median_s": statistics.median(values),
        "p95_s": percentile(values, 0.95),
        "n": len(values),
    }


def report(results: dict, meta: dict) -> dict:
    rounds = results["rounds"]
    search = [r["search"]["total_s"] for r in rounds]
    direct = [r["direct"]["total_s"] for r in rounds]
    ratio = statistics.median(search) / statistics.median(direct)
    return {
        **meta,
        "search_s": search,
        "direct_s": direct,
        "first": [r["first"] for r in rounds],
        "search_median_s": statistics.median(search),
        "direct_median_s": statistics.median(direct),
        "round_ratios": [s / d for s, d in zip(search, direct, strict=True)],
        "ratio": ratio,
        "target": TARGET_RATIO,
        "met": ratio <= TARGET_RATIO,
        "run": {
            side: summary([v for r in rounds for v in r[side]["run_s"]])
            for side in ("search", "direct")
        },
        "gap": {
            side: summary([v for r in rounds for v in r[side]["gap_s"]])
            for side in ("search", "direct")
        },
    }


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def print_report(rep: dict) -> None:
    verdict = {True: "meets", False: "misses"}
    print()
    print("=" * 78)
    print(
        f"Hyperparameter search overhead  ({rep['time']}, {rep['cpus']} CPUs, "
        f"engine {rep['engine']})"
    )
    print("Shared, noisy machine: compare the ratio, not the absolute figures.")
    print("-" * 78)
    print(
        f"{rep['trials']} runs of job_quadratic.py, {rep['parallel']} at a time "
        f"({rep['flavor']}, python image, {rep['steps']} steps of {rep['sleep']} s; "
        f"sampler {rep['sampler']}, no pruning), {rep['repeat']} round(s), "
        f"first side: {', '.join(rep['first'])}"
    )
    print(
        f"   search (POST /searches until completed):     median {rep['search_median_s']:.2f} s"
        f"  ({runs_text(rep['search_s'])})"
    )
    print(
        f"   direct (job versions, {rep['parallel']} at a time, by hand): "
        f"median {rep['direct_median_s']:.2f} s  ({runs_text(rep['direct_s'])})"
    )
    print(
        f"   ratio search / direct {rep['ratio']:.2f}  (rounds: "
        f"{runs_text(rep['round_ratios'])}; {verdict[rep['met']]} the target of "
        f"<= {rep['target']})"
    )
    run, gap = rep["run"], rep["gap"]
    print(
        f"   each run, start to end (median): search {_s(run['search']['median_s'])}, "
        f"direct {_s(run['direct']['median_s'])}"
    )
    print(
        f"   slot gap, a run's end to the next run made (median / p95): search "
        f"{_s(gap['search']['median_s'])} / {_s(gap['search']['p95_s'])}, direct "
        f"{_s(gap['direct']['median_s'])} / {_s(gap['direct']['p95_s'])} "
        f"(direct polls every {rep['poll']} s)"
    )
    print("=" * 78)


# --- setup and teardown ---------------------------------------------------------------


def benchmark(args, root: Path) -> dict:
    config = REPO / "workbench.toml"
    settings, _ = load_settings(config if config.exists() else None)
    engine = settings.engine()
    ref = load_catalog().get("python").ref
    try:
        docker.APIClient(base_url=engine.url, timeout=60).inspect_image(ref)
    except docker.errors.ImageNotFound:
        sys.exit(f"Image {ref} is not built; build it first (`workbench images build python`).")
    extra = ""
    if args.search_poll is not None:
        extra = f"[workbench.experiments]\npoll_seconds = {args.search_poll}\n"
    (root / "hub").mkdir()
    hub = Hub(root / "hub", extra_settings=extra, engine_url=engine.url)
    log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
    started = time.monotonic()
    try:
        hub.start()
        results = Bench(args, hub.add_user(USER)).run()
        meta = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "engine": engine.kind,
            "flavor": args.flavor,
            "trials": args.trials,
            "parallel": args.parallel,
            "steps": args.steps,
            "sleep": args.sleep,
            "sampler": args.sampler,
            "seed": args.seed,
            "repeat": args.repeat,
            "poll": args.poll,
            "search_poll": args.search_poll,
        }
        rep = report(results, meta)
        rep["seconds"] = round(time.monotonic() - started, 1)
        return rep
    finally:
        wind_down(hub, engine, args.hub_log)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8, help="runs on each side (default 8)")
    p.add_argument("--parallel", type=int, default=2, help="runs at once (default 2)")
    p.add_argument("--repeat", type=int, default=1, help="rounds of both sides (default 1)")
    p.add_argument("--steps", type=int, default=5, help="steps of each run (default 5)")
    p.add_argument("--sleep", type=float, default=0.2, help="seconds of each step (default 0.2)")
    p.add_argument("--flavor", default="cpu.tiny", help="each run's flavor (default cpu.tiny)")
    p.add_argument(
        "--sampler", default="tpe", choices=("tpe", "random"), help="the search's (default tpe)"
    )
    p.add_argument("--seed", type=int, default=7, help="the sampler's seed (default 7)")
    p.add_argument(
        "--poll",
        type=float,
        default=0.2,
        help="seconds between this process's reads of run and search states (default 0.2)",
    )
    p.add_argument(
        "--search-poll",
        type=float,
        help="the hub's [workbench.experiments] poll_seconds (default: the setting's default)",
    )
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    if args.trials < 1 or args.repeat < 1 or args.steps < 1:
        p.error("--trials, --repeat and --steps must be at least 1")
    if not 1 <= args.parallel <= args.trials:
        p.error("--parallel must be between 1 and --trials")
    if args.poll <= 0 or args.sleep < 0:
        p.error("--poll must be more than 0 and --sleep 0 or more")
    return args


def main(argv=None) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return run_main(parse_args(argv), benchmark, print_report, "search")


if __name__ == "__main__":
    sys.exit(main())
