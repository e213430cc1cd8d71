"""Two calls every page and test repeats: a password sign-in, and the images' "ready" check.

Run from the repository root (the engine and the default image as `make test` leaves them):

    .venv/bin/python benchmarks/bench_signin_images.py [--rounds 15]

In this process, alternating which side goes first each round:

* sign-in: WorkbenchAuthenticator.authenticate against a real SQLite database, for an account
  whose hash is at cost 12 (the default) and one at cost 4 (test hubs), with a ticker on the
  event loop counting how often it ran during the check (a check on the loop itself stalls
  every other request: the ticker would stop). The baseline is the same check done the way
  NativeAuthenticator does it, on the loop.
* images: which catalog images the engine holds, as GET /images asks it now (one inspect per
  catalog image, EngineProbe.present) against the way it asked before (docker-py's
  images.list(), which lists every image and then inspects each one).

Prints medians per side and the ratios; no target beyond "not slower".
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker  # noqa: E402
from jupyterhub import orm  # noqa: E402
from nativeauthenticator import NativeAuthenticator  # noqa: E402

from hub.auth import WorkbenchAuthenticator, set_password  # noqa: E402
from hub.service.app import EngineProbe  # noqa: E402
from hub.settings import load_settings  # noqa: E402
from images.catalog import load_catalog  # noqa: E402
from tests.platform import loop_ticks_during  # noqa: E402


async def timed_signin(check, auth, user: str, password: str) -> tuple[float, int]:
    """Seconds the check took and how many 10 ms ticks the loop ran meanwhile."""
    signed_in, took, ticks = await loop_ticks_during(
        check(auth, None, {"username": user, "password": password})
    )
    assert signed_in == user
    return took, ticks


async def bench_signin(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        db = orm.new_session_factory(f"sqlite:///{tmp}/hub.sqlite")()
        sides = {}
        for cost in (12, 4):
            auth = WorkbenchAuthenticator(db=db, password_hash_rounds=cost)
            user = f"cost{cost}"
            set_password(db, user, "a-password-here", rounds=cost)
            sides[f"thread, cost {cost}"] = (WorkbenchAuthenticator.authenticate, auth, user)
            sides[f"on the loop, cost {cost}"] = (NativeAuthenticator.authenticate, auth, user)
        samples = {name: [] for name in sides}
        names = list(sides)
        for r in range(rounds):
            for name in names if r % 2 == 0 else reversed(names):
                check, auth, user = sides[name]
                samples[name].append(await timed_signin(check, auth, user, "a-password-here"))
        print("sign-in: median seconds, median loop ticks (10 ms each) during the check")
        for name in names:
            took = statistics.median(s[0] for s in samples[name])
            ticks = statistics.median(s[1] for s in samples[name])
            print(f"  {name:22} {took:7.3f} s  {ticks:5.0f} ticks")
        for cost in (12, 4):
            ratio = statistics.median(s[0] for s in samples[f"thread, cost {cost}"]) / (
                statistics.median(s[0] for s in samples[f"on the loop, cost {cost}"])
            )
            print(f"  ratio thread / loop at cost {cost}: {ratio:.2f}")
        low = statistics.median(s[0] for s in samples["thread, cost 4"])
        high = statistics.median(s[0] for s in samples["thread, cost 12"])
        print(f"  ratio cost 4 / cost 12: {low / high:.3f}")
        db.close()


async def bench_images(rounds: int) -> None:
    settings, _ = load_settings()
    url = settings.engine(start=False).url
    refs = [entry.ref for entry in load_catalog()]
    probe = EngineProbe(settings, url)

    def listed():
        client = docker.DockerClient(base_url=url, timeout=60)
        tags = {tag for image in client.images.list() for tag in image.tags}
        return {ref for ref in refs if ref in tags}

    sides = {
        "inspect each catalog image": lambda: probe.present(refs),
        "images.list() (before)": lambda: asyncio.to_thread(listed),
    }
    answers = {}
    samples = {name: [] for name in sides}
    for r in range(rounds):
        for name in sides if r % 2 == 0 else reversed(list(sides)):
            started = time.perf_counter()
            answers[name] = await sides[name]()
            samples[name].append(time.perf_counter() - started)
    assert len(set(map(frozenset, answers.values()))) == 1, answers
    count = len(docker.APIClient(base_url=url).images())
    print(f"images ready check: {len(refs)} catalog images, {count} images on the engine")
    for name in sides:
        print(f"  {name:28} median {statistics.median(samples[name]):7.3f} s")
    now, before = (statistics.median(samples[n]) for n in sides)
    print(f"  ratio now / before: {now / before:.3f}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="rounds per side (default 15)")
    args = parser.parse_args(argv)
    asyncio.run(bench_signin(args.rounds))
    asyncio.run(bench_images(args.rounds))


if __name__ == "__main__":
    main()
