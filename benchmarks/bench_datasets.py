"""Importing a folder of images into a dataset against copying it; exporting 100,000 boxes as COCO.

Run from the repository root:

    .venv/bin/python benchmarks/bench_datasets.py [--images 10000] [--rounds 3] [--profile]
        [--json FILE]

It makes --images small PNGs (32 x 32, each one of its own colour, one pixel numbering it) in a
folder of its own, starts a real hub (tests.platform.Hub: JupyterHub, proxy and platform API on
free ports) on the local engine and signs a user up. Then two figures:

1. Import. The folder made into a new image classification dataset through the platform: the
   SDK's datasets.create(..., folder=...), which lists the folder, writes it into tar archives
   and uploads them, while the platform unpacks them, checks every image with Pillow, stores
   each file by its SHA-256 and records the samples; against shutil.copytree of the same
   folder into a fresh folder on the same disk (no sync either way). --rounds rounds, the
   order alternating from round to round; each round's dataset and copy are removed before
   the next (so no round finds the files stored already). Ratio = platform / copy, medians;
   target <= 1.5. The platform's time is split on the client side: listing the folder,
   writing the tar archives, sending their bodies, the server's answer after the last byte
   (unpacking, checking, storing, recording), and the rest (the dataset's creation and the
   final read of it). --profile also runs the hub's upload code in this process
   (DatasetService.upload of the same tar, on a database and blob store of its own, its
   worker threads' calls run inline): once with its stages timed (unpacking, the Pillow
   check, hashing and storing, recording), once under cProfile, function by function.
2. COCO export of 1,000 images with 100 boxes each (100,000 boxes). In memory: the samples
   as the formats module takes them, written by training_bridge.datasets.formats.write("coco")
   into a fresh folder (the images hard-linked), median of --rounds. Through the API: a
   dataset of the same 1,000 images, annotated with the same boxes through the bulk PATCH
   (1,000 samples a request), exported with POST .../export {"format": "coco"} (the platform
   writes the folder, zips it and sends it; the SDK writes the download to disk), median of
   --rounds. Each export is checked once: 1,000 images and 100,000 boxes.

Timings on a shared machine are noisy: compare the ratio, not the absolute figures. Everything
made (the hub and whatever the engine holds under its name prefix, the temporary folders) is
removed at the end, also on errors, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import random
import shutil
import statistics
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402
from workbench.resources import datasets as sdk  # noqa: E402

from benchmarks.bench_jobs import run_main, wind_down  # noqa: E402
from hub.db import Database, upgrade  # noqa: E402
from hub.settings import load_settings  # noqa: E402
from tests.platform import Hub  # noqa: E402
from training_bridge.datasets import formats  # noqa: E402
from training_bridge.datasets.blobs import BlobStore  # noqa: E402
from training_bridge.datasets.datasets import DatasetService  # noqa: E402
from training_bridge.datasets.settings import DatasetSettings  # noqa: E402

log = logging.getLogger("bench_datasets")

TARGET_RATIO = 1.5
USER = "datasetbench"
IMPORT_SIDE = 32  # the imported images' width and height
EXPORT_IMAGES = 1000
EXPORT_BOXES = 100  # per image
EXPORT_SIDE = 64
IMPORT_LABELS = ["cat", "dog"]
EXPORT_LABELS = [f"class-{n}" for n in range(10)]
CREATED = "2026-01-01T00:00:00Z"
CLIENT_TIMEOUT = 1800.0
PROFILE_LINES = 25


def png(i: int, side: int) -> bytes:
    """A PNG that differs from every other one: a colour of its own, i in its first pixel."""
    image = Image.new("RGB", (side, side), ((i * 7) % 256, (i * 13) % 256, (i * 29) % 256))
    image.putpixel((0, 0), ((i >> 16) & 255, (i >> 8) & 255, i & 255))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def make_images(folder: Path, count: int, side: int) -> int:
    """count PNGs at folder/images/NNNNNN.png; their bytes in all."""
    (folder / "images").mkdir(parents=True)
    total = 0
    for i in range(count):
        data = png(i, side)
        (folder / "images" / f"{i:06d}.png").write_bytes(data)
        total += len(data)
    return total


def boxes(rng: random.Random) -> list[dict]:
    """EXPORT_BOXES boxes inside an EXPORT_SIDE image, labels taken in turn."""
    out = []
    for n in range(EXPORT_BOXES):
        x1 = round(rng.uniform(0, EXPORT_SIDE - 8), 1)
        y1 = round(rng.uniform(0, EXPORT_SIDE - 8), 1)
        x2 = round(x1 + rng.uniform(1, 8), 1)
        y2 = round(y1 + rng.uniform(1, 8), 1)
        out.append({"label": EXPORT_LABELS[n % len(EXPORT_LABELS)], "box": [x1, y1, x2, y2]})
    return out


def file_count(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def check_coco(document: dict, where: str) -> None:
    """An export's COCO document holds every image and every box."""
    images, annotations = len(document["images"]), len(document["annotations"])
    if images != EXPORT_IMAGES or annotations != EXPORT_IMAGES * EXPORT_BOXES:
        sys.exit(
            f"{where}: {images} images and {annotations} boxes, not {EXPORT_IMAGES} and "
            f"{EXPORT_IMAGES * EXPORT_BOXES}"
        )


class Phases:
    """The SDK's upload timed step by step: its own functions wrapped while a round runs."""

    def __init__(self):
        self.times = {"list": 0.0, "tar": 0.0, "send": 0.0, "answer": 0.0}
        self._saved: dict[str, object] = {}

    def __enter__(self) -> Phases:
        saved = self._saved = {
            n: getattr(sdk, n) for n in ("local_files", "_temporary_tar", "_send")
        }
        times = self.times

        def timed(name, func):
            def call(*args, **kwargs):
                started = time.perf_counter()
                try:
                    return func(*args, **kwargs)
                finally:
                    times[name] += time.perf_counter() - started

            return call

        async def send(client, method, path, source, size, content_type, **kwargs):
            started = time.perf_counter()
            sent_at = []
            given = kwargs.pop("on_sent", None)

            def on_sent(n: int):
                if n >= size and not sent_at:
                    sent_at.append(time.perf_counter())
                if given is not None:
                    given(n)

            try:
                return await saved["_send"](
                    client, method, path, source, size, content_type, on_sent=on_sent, **kwargs
                )
            finally:
                ended = time.perf_counter()
                body = sent_at[0] if sent_at else ended
                times["send"] += body - started
                times["answer"] += ended - body

        sdk.local_files = timed("list", saved["local_files"])
        sdk._temporary_tar = timed("tar", saved["_temporary_tar"])
        sdk._send = send
        return self

    def __exit__(self, *exc):
        for name, func in self._saved.items():
            setattr(sdk, name, func)


class Bench:
    def __init__(self, args, hub: Hub, root: Path):
        self.args = args
        self.hub = hub
        self.root = root
        self.user = hub.add_user(USER)
        self.user.timeout = CLIENT_TIMEOUT

    # --- 1. import -------------------------------------------------------------------------
    def import_platform(self, source: Path, name: str) -> tuple[float, dict]:
        """Seconds to make dataset `name` of the folder through the SDK, and their split."""
        with Phases() as phases:
            started = time.perf_counter()
            ds = self.user.datasets.create(
                name, "image_classification", labels=IMPORT_LABELS, folder=source, progress=False
            )
            seconds = time.perf_counter() - started
        if ds.data["samples"] != self.args.images:
            sys.exit(f"dataset {name} has {ds.data['samples']} samples, not {self.args.images}")
        ds.delete()
        split = {k: round(v, 3) for k, v in phases.times.items()}
        split["rest"] = round(seconds - sum(phases.times.values()), 3)
        return seconds, split

    def import_copy(self, source: Path, target: Path) -> float:
        """Seconds to copy the folder with shutil.copytree."""
        started = time.perf_counter()
        shutil.copytree(source, target)
        seconds = time.perf_counter() - started
        if file_count(target) != self.args.images:
            sys.exit(f"the copy at {target} has {file_count(target)} files")
        shutil.rmtree(target)
        return seconds

    def run_import(self) -> dict:
        args = self.args
        source = self.root / "import-source"
        size = make_images(source, args.images, IMPORT_SIDE)
        log.info("import: %d images (%.0f KiB) in %s", args.images, size / 1024, source)
        platform, copy, splits = [], [], []
        for r in range(args.rounds):
            order = ("platform", "copy") if r % 2 == 0 else ("copy", "platform")
            for what in order:
                if what == "platform":
                    seconds, split = self.import_platform(source, f"import-{r + 1}")
                    platform.append(seconds)
                    splits.append(split)
                else:
                    seconds = self.import_copy(source, self.root / f"import-copy-{r + 1}")
                    copy.append(seconds)
                log.info("import round %d: %s %.2f s", r + 1, what, seconds)
        rep = {
            "images": args.images,
            "bytes": size,
            "platform_s": [round(s, 3) for s in platform],
            "copy_s": [round(s, 3) for s in copy],
            "median_s": {"platform": round(median(platform), 3), "copy": round(median(copy), 3)},
            "split_s": splits,
            "split_median_s": {k: round(median([s[k] for s in splits]), 3) for k in splits[0]},
        }
        rep["ratio"] = round(median(platform) / median(copy), 2)
        if args.profile:
            rep["profile"] = profile_upload(source, self.root / "profile")
        return rep

    # --- 2. COCO export --------------------------------------------------------------------
    def run_export(self) -> dict:
        args = self.args
        source = self.root / "export-source"
        make_images(source, EXPORT_IMAGES, EXPORT_SIDE)
        rng = random.Random(7)
        keys = [f"images/{i:06d}.png" for i in range(EXPORT_IMAGES)]
        given = {key: boxes(rng) for key in keys}
        rep: dict = {"images": EXPORT_IMAGES, "boxes": EXPORT_IMAGES * EXPORT_BOXES}

        # in memory: the formats module alone
        samples = [
            {
                "key": key,
                "text": None,
                "width": EXPORT_SIDE,
                "height": EXPORT_SIDE,
                "annotations": [
                    {**a, "annotated_by": USER, "confidence": None, "created": CREATED}
                    for a in given[key]
                ],
                "split": "",
            }
            for key in keys
        ]
        write_s = []
        for r in range(args.rounds):
            out = self.root / f"coco-{r + 1}"
            started = time.perf_counter()
            formats.write(
                "coco",
                samples,
                EXPORT_LABELS,
                "object_detection",
                out,
                lambda sample: source / sample["key"],
            )
            write_s.append(time.perf_counter() - started)
            if r == 0:
                document = json.loads((out / "annotations" / "instances_default.json").read_bytes())
                check_coco(document, "formats.write")
            shutil.rmtree(out)
            log.info("export round %d: formats.write %.2f s", r + 1, write_s[-1])
        rep["write_s"] = [round(s, 3) for s in write_s]
        rep["write_median_s"] = round(median(write_s), 3)

        # through the API: upload, bulk annotation, export
        started = time.perf_counter()
        ds = self.user.datasets.create(
            "export-coco",
            "object_detection",
            labels=EXPORT_LABELS,
            folder=source,
            progress=False,
        )
        rep["upload_s"] = round(time.perf_counter() - started, 3)
        ids = {s["key"]: s["id"] for s in ds.samples(page_size=500)}
        if sorted(ids) != keys:
            sys.exit(f"the export dataset has {len(ids)} samples, not {EXPORT_IMAGES}")
        started = time.perf_counter()
        ds.annotate_many({ids[key]: given[key] for key in keys})
        rep["annotate_s"] = round(time.perf_counter() - started, 3)
        stats = ds.stats()
        if stats["labelled"] != EXPORT_IMAGES:
            sys.exit(f"{stats['labelled']} samples labelled, not {EXPORT_IMAGES}")
        log.info(
            "export dataset: uploaded in %.1f s, annotated in %.1f s",
            rep["upload_s"],
            rep["annotate_s"],
        )
        api_s = []
        for r in range(args.rounds):
            target = self.root / f"export-{r + 1}.zip"
            started = time.perf_counter()
            ds.export(format="coco", to=target)
            api_s.append(time.perf_counter() - started)
            if r == 0:
                with zipfile.ZipFile(target) as z:
                    document = json.loads(z.read("annotations/instances_default.json"))
                check_coco(document, "the API's export")
            target.unlink()
            log.info("export round %d: POST .../export %.2f s", r + 1, api_s[-1])
        ds.delete()
        rep["api_s"] = [round(s, 3) for s in api_s]
        rep["api_median_s"] = round(median(api_s), 3)
        return rep

    def run(self) -> dict:
        return {"import": self.run_import(), "export": self.run_export()}


# --- the hub's upload code, in-process ------------------------------------------------------
async def _inline(func, /, *args, **kwargs):
    return func(*args, **kwargs)


# the stages of DatasetService.upload timed in profile_upload: (label, owner, attribute)
STAGES = (
    ("unpack (uploads.py unpack)", "module", "unpack"),
    ("check and store (datasets.py DatasetService._prepare)", "service", "_prepare"),
    ("  Pillow check (uploads.py inspect_image)", "module", "inspect_image"),
    ("  hash and move (blobs.py BlobStore.put_file_blocking)", "blobs", "put_file_blocking"),
    ("record (datasets.py DatasetService._commit)", "service", "_commit"),
)


def _timed(times: dict, label: str, func):
    def call(*args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            times[label] = times.get(label, 0.0) + time.perf_counter() - started

    return call


def profile_upload(source: Path, root: Path) -> dict:
    """DatasetService.upload of the folder's tar (as the SDK writes it), on a database and blob
    store of its own, twice: once with its stages timed (each worker thread's call run inline),
    once under cProfile (which sees only its own thread: there every worker thread's call
    runs inline). The seconds, the stages' and the functions that cost most."""
    from training_bridge.datasets import datasets as service_module

    root.mkdir()
    url = f"sqlite:///{root / 'platform.sqlite'}"
    upgrade(url)
    db = Database(url)
    data = root / "datasets"
    service = DatasetService(
        db=db, settings=DatasetSettings(), data_root=data, blobs=BlobStore(data.as_uri() + "/blobs")
    )

    async def run_inline(fn):
        return db.call(fn)

    db.run = run_inline
    caller = {"name": USER, "admin": False}
    owners = {"module": service_module, "service": service, "blobs": service.blobs}

    def upload(name: str, profiler: cProfile.Profile | None = None) -> float:
        body = {"name": name, "type": "image_classification", "labels": IMPORT_LABELS}
        asyncio.run(service.create(caller, body))
        staging = service.staging()
        with open(staging / "body", "wb") as f:
            sdk.write_tar(sdk.local_files(source), f)
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            answer = asyncio.run(
                service.upload(caller, USER, name, staging / "body", "application/x-tar", None)
            )
        finally:
            if profiler is not None:
                profiler.disable()
        seconds = time.perf_counter() - started
        if answer["added"] != file_count(source):
            sys.exit(f"the in-process upload added {answer['added']} samples")
        service.discard(staging)
        asyncio.run(service.delete(caller, USER, name))  # the next upload stores the files anew
        return seconds

    stages: dict[str, float] = {}
    saved = [(owners[owner], name, getattr(owners[owner], name)) for _, owner, name in STAGES]
    original = asyncio.to_thread
    asyncio.to_thread = _inline
    try:
        for (label, _, _), (owner, name, func) in zip(STAGES, saved, strict=True):
            setattr(owner, name, _timed(stages, label, func))
        try:
            timed = upload("staged")
        finally:
            for owner, name, func in saved:
                setattr(owner, name, func)
        profiler = cProfile.Profile()
        profiled = upload("profiled", profiler)
    finally:
        asyncio.to_thread = original
        db.dispose()
    entries = []
    measured = pstats.Stats(profiler).stats
    for (filename, line, function), (_, calls, own, cumulative, _) in measured.items():
        where = filename
        with contextlib.suppress(ValueError):
            where = str(Path(filename).relative_to(REPO))
        entries.append(
            {
                "function": f"{where}:{line}({function})",
                "calls": calls,
                "own_s": round(own, 3),
                "cumulative_s": round(cumulative, 3),
            }
        )
    ours = [e for e in entries if e["function"].startswith("training_bridge/")]
    return {
        "seconds": round(timed, 3),
        "stages_s": {label: round(stages.get(label, 0.0), 3) for label, _, _ in STAGES},
        "profiled_seconds": round(profiled, 3),
        "cumulative": sorted(ours, key=lambda e: -e["cumulative_s"])[:PROFILE_LINES],
        "own": sorted(entries, key=lambda e: -e["own_s"])[:PROFILE_LINES],
    }


# --- report ----------------------------------------------------------------------------------
def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_report(rep: dict) -> None:
    meta, imp, exp = rep["meta"], rep["import"], rep["export"]
    print("=" * 78)
    print(f"Datasets ({meta['cpus']} CPUs, {meta['rounds']} rounds)")
    print(
        f"1. Import of {imp['images']} images of {IMPORT_SIDE} x {IMPORT_SIDE} "
        f"({imp['bytes'] / 1024:.0f} KiB)"
    )
    print(f"   {'':40}{'median':>10}   rounds")
    for what, key in (
        ("through the platform (datasets.create)", "platform"),
        ("shutil.copytree", "copy"),
    ):
        rounds = ", ".join(f"{s:.2f}" for s in imp[f"{key}_s"])
        print(f"   {what:40}{imp['median_s'][key]:>8.2f} s   {rounds}")
    print(
        f"   ratio platform / copy: {imp['ratio']:.2f}; target <= {TARGET_RATIO}: "
        f"{_met(imp['ratio'] <= TARGET_RATIO)}"
    )
    split = imp["split_median_s"]
    print(
        f"   the platform's time (medians): listing {split['list']:.2f} s, "
        f"tar {split['tar']:.2f} s, sending {split['send']:.2f} s, "
        f"server's answer after the body {split['answer']:.2f} s, "
        f"rest {split['rest']:.2f} s"
    )
    if "profile" in imp:
        prof = imp["profile"]
        print(f"   the hub's upload code in-process: {prof['seconds']:.2f} s, of which")
        for label, seconds in prof["stages_s"].items():
            print(f"     {seconds:>8.2f} s  {label}")
        print(
            f"   under cProfile ({prof['profiled_seconds']:.2f} s), cumulative (training_bridge):"
        )
        for e in prof["cumulative"][:12]:
            print(f"     {e['cumulative_s']:>8.2f} s {e['calls']:>8}  {e['function']}")
        print("   own time (everything):")
        for e in prof["own"][:12]:
            print(f"     {e['own_s']:>8.2f} s {e['calls']:>8}  {e['function']}")
    print(
        f"2. COCO export of {exp['boxes']} boxes ({exp['images']} images x {EXPORT_BOXES}), "
        "median seconds"
    )
    print(f"   formats.write('coco') in memory          {exp['write_median_s']:>8.2f} s")
    print(f"   POST .../export (write, zip, download)   {exp['api_median_s']:>8.2f} s")
    print(
        f"   (the dataset: uploaded in {exp['upload_s']:.2f} s, its boxes set through the bulk "
        f"PATCH in {exp['annotate_s']:.2f} s)"
    )
    print("=" * 78)


def benchmark(args, root: Path) -> dict:
    config = REPO / "workbench.toml"
    settings, _ = load_settings(config if config.exists() else None)
    engine = settings.engine()
    (root / "hub").mkdir()
    hub = Hub(root / "hub", engine_url=engine.url)
    log.info("starting the hub at %s (log: %s)", hub.url, hub.log_path)
    started = time.monotonic()
    try:
        hub.start()
        rep = Bench(args, hub, root).run()
        rep["meta"] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cpus": os.cpu_count(),
            "engine": engine.kind,
            "images": args.images,
            "rounds": args.rounds,
            "seconds": round(time.monotonic() - started, 1),
        }
        return rep
    finally:
        wind_down(hub, engine, args.hub_log)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10_000, help="images imported (10000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each figure (3)")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also run the hub's upload code once in-process under cProfile",
    )
    p.add_argument("--json", help="also write the results as JSON to this file")
    p.add_argument("--hub-log", help="keep a copy of the hub's log at this path")
    args = p.parse_args(argv)
    if args.images < 1 or args.rounds < 1:
        p.error("--images and --rounds must be at least 1")
    return args


def main(argv=None) -> int:
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return run_main(parse_args(argv), benchmark, print_report, "datasets")


if __name__ == "__main__":
    sys.exit(main())
