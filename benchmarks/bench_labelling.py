"""The labelling view at 100,000 samples against the same view at 1,000.

Run from the repository root (Chromium at /usr/bin/chromium or $WORKBENCH_CHROMIUM):

    .venv/bin/python benchmarks/bench_labelling.py [--samples 100000] [--baseline 1000]
        [--presses 200] [--interval-ms 150] [--json FILE]

It starts a real hub (tests.platform.Hub: JupyterHub, proxy and platform API on free ports)
on the local engine, builds the python image if its layers are out of date (it carries the
JupyterLab extension), signs a user up and starts an instance of it. Two image
classification datasets are made through the platform API: --samples small PNGs (16 x 16,
each one different) and --baseline of the same kind, uploaded as tar archives of
--archive-samples files each (the API's bulk path: one request per archive). Then, for each
dataset, in headless Chromium signed in through the hub's login page:

1. First sample: the panel's "Label" button clicked, until the view has shown its first
   sample (the page's own clock, performance.now(): from the click to the view's
   "workbench-sample-shown" event, which it sends once the sample's image is decoded and
   drawn).
2. Next sample: --presses presses of the → key (real key presses through the browser's
   input), each timed in the page from the key event's timestamp until the view has shown
   the next sample; one press every --interval-ms (a fast labeller's pace; 0: each press as
   soon as the previous sample shows). Median and p95.

Ratio = the large dataset's figure / the baseline's (median and p95 of figure 2, figure 1):
how much the view slows down with the dataset's size; target <= 1.5. The baseline runs first
and its dataset is deleted before the large one is measured, so both views start cold.
Timings on a shared machine are noisy: compare the ratios, not the absolute figures.
Everything made (the hub, its instance's container and volume, which share the hub's name
prefix) is removed at the end, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import statistics
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from benchmarks.bench_jobs import percentile, run_main, wind_down  # noqa: E402
from hub.settings import load_settings  # noqa: E402
from images.build import ImageBuilder  # noqa: E402
from images.catalog import load_catalog  # noqa: E402
from spawner.engine import podman_env  # noqa: E402
from tests.platform import Hub  # noqa: E402

log = logging.getLogger("bench_labelling")

TARGET_RATIO = 1.5
USER = "labelbench"
INSTANCE = "bench-nb"
LABELS = [{"name": "cat"}, {"name": "dog"}]
SIDE = 16  # the sample images' width and height
CHROMIUM = Path(os.environ.get("WORKBENCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
LAB_TIMEOUT_MS = 120_000
VIEW_TIMEOUT_MS = 120_000
START_TIMEOUT = 300.0

# what the page records: each → key's timestamp, and the time the view showed a sample
RECORDER = """() => {
  const bench = (window.__labelBench = { pressed: null, times: [], first: null });
  document.addEventListener('keydown', event => {
    if (event.key === 'ArrowRight') { bench.pressed = event.timeStamp; }
  }, true);
  document.addEventListener('workbench-sample-shown', () => {
    const now = performance.now();
    if (bench.pressed !== null) {
      bench.times.push(now - bench.pressed);
      bench.pressed = null;
    }
  });
}"""
# click "Label" and wait for the first sample, on the page's clock
FIRST_SAMPLE = """async (selector) => {
  const button = document.querySelector(selector);
  const shown = new Promise(resolve =>
    document.addEventListener('workbench-sample-shown', resolve, { once: true }));
  const started = performance.now();
  button.click();
  await shown;
  return performance.now() - started;
}"""


def png(i: int) -> bytes:
    """A small PNG that differs from every other one (i in its first pixel)."""
    image = Image.new("RGB", (SIDE, SIDE), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256))
    image.putpixel((0, 0), ((i >> 16) & 255, (i >> 8) & 255, i & 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def archive(first: int, count: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for i in range(first, first + count):
            data = png(i)
            info = tarfile.TarInfo(f"images/{i:07d}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "max_ms": round(max(values), 2),
    }


class Bench:
    def __init__(self, args, hub: Hub):
        self.args = args
        self.hub = hub
        self.user = hub.add_user(USER)

    def make_dataset(self, name: str, samples: int) -> float:
        """A dataset of `samples` images through the API; the seconds it took."""
        started = time.monotonic()
        self.user.api(
            "POST", "datasets", {"name": name, "type": "image_classification", "labels": LABELS}
        )
        url = f"{self.user.api_url}/datasets/{USER}/{name}/samples"
        step = self.args.archive_samples
        for first in range(0, samples, step):
            body = archive(first, min(step, samples - first))
            r = self.user.session.post(
                url, data=body, headers={"Content-Type": "application/x-tar"}, timeout=1800
            )
            if r.status_code != 200:
                sys.exit(f"uploading samples of {name} failed: HTTP {r.status_code} {r.text[:300]}")
            log.info("%s: %d of %d samples", name, first + r.json()["added"], samples)
        seconds = time.monotonic() - started
        total = self.user.api("GET", f"datasets/{USER}/{name}/stats")["samples"]
        if total != samples:
            sys.exit(f"{name} has {total} samples, not {samples}")
        return seconds

    def start_instance(self) -> None:
        body = {"name": INSTANCE, "image": "python", "flavor": self.args.flavor, "storage_gib": 1}
        self.user.api("POST", f"users/{USER}/instances", body)
        deadline = time.monotonic() + START_TIMEOUT
        while self.user.instance(INSTANCE, USER)["state"] != "running":
            if time.monotonic() > deadline:
                sys.exit(f"the instance did not start: {self.user.instance(INSTANCE, USER)}")
            time.sleep(1)

    def measure(self, browser, name: str) -> dict:
        """Figures 1 and 2 for one dataset, in a fresh browser context."""
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.set_default_timeout(VIEW_TIMEOUT_MS)
        page = context.new_page()
        try:
            page.goto(f"{self.hub.url}/hub/login")
            page.fill("#username_input", USER)
            page.fill("#password_input", self.hub.passwords[USER])
            page.click("#login_submit")
            page.wait_for_url("**/hub/home**")
            # ?reset: a workspace of its own, without the views of the last round
            lab = f"{self.hub.url}/user/{USER}/{INSTANCE}/lab?reset"
            page.goto(lab, timeout=LAB_TIMEOUT_MS)
            page.wait_for_selector("#jp-main-dock-panel", timeout=LAB_TIMEOUT_MS)
            panel = page.locator("#jp-workbench-panel")
            if not panel.is_visible():
                page.locator("li.lm-TabBar-tab[data-id='jp-workbench-panel']").click()
            panel.locator("button[data-action='refresh-datasets']").click()
            selector = f"li[data-dataset='{USER}/{name}'] button[data-action='label']"
            page.wait_for_selector(selector)
            page.evaluate(RECORDER)
            first = page.evaluate(FIRST_SAMPLE, selector)
            view = page.locator(f".jp-WorkbenchLabel[data-dataset='{USER}/{name}']")
            view.focus()
            for n in range(1, self.args.presses + 1):
                page.keyboard.press("ArrowRight")
                page.wait_for_function(f"window.__labelBench.times.length >= {n}")
                if self.args.interval_ms:
                    time.sleep(self.args.interval_ms / 1000)
            times = page.evaluate("window.__labelBench.times")
            position = view.locator("[data-field='position']").inner_text()
            log.info("%s: first sample %.0f ms, now at %s", name, first, position)
            return {"first_ms": round(first, 1), "next": summary(times), "position": position}
        finally:
            context.close()

    def run(self) -> dict:
        args = self.args
        log.info("starting an instance (%s)", args.flavor)
        self.start_instance()
        rep = {"upload_seconds": {}}
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                log.info("baseline: %d samples", args.baseline)
                rep["upload_seconds"]["baseline"] = round(
                    self.make_dataset("baseline", args.baseline), 1
                )
                rep["baseline"] = self.measure(browser, "baseline")
                self.user.api("DELETE", f"datasets/{USER}/baseline")
                log.info("large: %d samples", args.samples)
                rep["upload_seconds"]["large"] = round(self.make_dataset("large", args.samples), 1)
                rep["large"] = self.measure(browser, "large")
            finally:
                browser.close()
        base, large = rep["baseline"], rep["large"]
        rep["ratio"] = {
            "next_median": round(large["next"]["median_ms"] / base["next"]["median_ms"], 2),
            "next_p95": round(large["next"]["p95_ms"] / base["next"]["p95_ms"], 2),
            "first": round(large["first_ms"] / base["first_ms"], 2),
        }
        return rep


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_report(rep: dict) -> None:
    meta, base, large, ratio = rep["meta"], rep["baseline"], rep["large"], rep["ratio"]
    print("=" * 78)
    print(
        f"Labelling view ({meta['cpus']} CPUs, {meta['engine']}; {meta['presses']} presses, "
        f"one each {meta['interval_ms']} ms)"
    )
    print(
        f"   datasets made through the API: {meta['baseline']} samples in "
        f"{rep['upload_seconds']['baseline']} s, {meta['samples']} in "
        f"{rep['upload_seconds']['large']} s"
    )
    print(f"{'':34}{'first sample':>14}{'next median':>14}{'next p95':>12}")
    for what, side in (
        (f"{meta['baseline']} samples", base),
        (f"{meta['samples']} samples", large),
    ):
        print(
            f"   {what:31}{side['first_ms']:>11.1f} ms{side['next']['median_ms']:>11.1f} ms"
            f"{side['next']['p95_ms']:>9.1f} ms"
        )
    ok = max(ratio.values()) <= TARGET_RATIO
    print(
        f"   ratio (large / baseline): first {ratio['first']:.2f}, next median "
        f"{ratio['next_median']:.2f}, next p95 {ratio['next_p95']:.2f}; target <= "
        f"{TARGET_RATIO}: {_met(ok)}"
    )
    print("=" * 78)


def benchmark(args, root: Path) -> dict:
    config = REPO / "workbench.toml"
    settings, _ = load_settings(config if config.exists() else None)
    engine = settings.engine()
    if not CHROMIUM.is_file():
        sys.exit(f"Chromium not found at {CHROMIUM}: install it or set $WORKBENCH_CHROMIUM.")
    log.info("building the python image if it is out of date (it carries the extension)")
    builder = ImageBuilder(
        load_catalog(),
        cli=engine.cli,
        engine_url=engine.url,
        cache_dir=REPO / ".run" / "cache",
        env=podman_env(),
    )
    builder.build(["python"])
    (root / "hub").mkdir()
    hub = Hub(root / "hub", engine_url=engine.url)
    log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
    started = time.monotonic()
    try:
        hub.start()
        rep = Bench(args, hub).run()
        rep["meta"] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "engine": engine.kind,
            "flavor": args.flavor,
            "samples": args.samples,
            "baseline": args.baseline,
            "presses": args.presses,
            "interval_ms": args.interval_ms,
            "seconds": round(time.monotonic() - started, 1),
        }
        return rep
    finally:
        wind_down(hub, engine, args.hub_log)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=100_000, help="the large dataset (100000)")
    p.add_argument("--baseline", type=int, default=1000, help="the baseline dataset (1000)")
    p.add_argument("--presses", type=int, default=200, help="→ presses per dataset (200)")
    p.add_argument(
        "--interval-ms", type=int, default=150, help="ms between presses (150; 0: back to back)"
    )
    p.add_argument(
        "--archive-samples", type=int, default=10_000, help="samples per uploaded archive (10000)"
    )
    p.add_argument("--flavor", default="cpu.small", help="the instance's flavor (cpu.small)")
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    if args.presses < 1 or args.presses >= args.baseline:
        p.error("--presses must be at least 1 and fewer than --baseline")
    if args.samples < args.baseline:
        p.error("--samples must be at least --baseline")
    if args.interval_ms < 0 or args.archive_samples < 1:
        p.error("--interval-ms must be 0 or more, --archive-samples at least 1")
    return args


def main(argv=None) -> int:
    return run_main(parse_args(argv), benchmark, print_report, "labelling")


if __name__ == "__main__":
    sys.exit(main())
