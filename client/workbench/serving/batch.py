"""`python -m workbench.serving.batch`: a model over a folder of inputs, into a JSON Lines file.

Every file below --inputs, in sorted order, is one input (a .jsonl file: one per line): .json
holds a v1 body ({"instances": [...]}), a v2 body ({"inputs": [{"name", ...}]}) or a bare list
(the instances); .npy an array (its first axis the instances; one instance where it has one
axis fewer than the signature's input); an image {"instances": [{"b64": <its bytes in
base64>, "key": <its path>}]} and a .txt file {"instances": [{"text": ..., "key": ...}]}, as
a dataset's samples (a published version's data/ folder) go to a custom predictor. Each
gives one line of --output, in the same order:
{"input": "<relative path>[#<line>]", "output": <v1 predictions | v2 outputs>, "error": null},
or the error and a null output; an input that fails stops nothing. Consecutive v1 inputs are
predicted together (up to --batch at a time) and split again. Progress goes to stdout as
`progress=<0..1>` lines, every 1% and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .spec import ModelLoadError

log = logging.getLogger("workbench.serving.batch")

SUFFIXES = (".json", ".jsonl", ".npy")
# a dataset's samples (a published version's data/ folder): one instance each, as the
# platform's auto-labelling sends them to a service
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff")
TEXT_SUFFIX = ".txt"


@dataclass
class Item:
    """One input: its key in the output, and its body or why it has none."""

    key: str
    body: object = None
    error: str | None = None

    @property
    def batchable(self) -> bool:
        body = self.body
        return (
            self.error is None
            and isinstance(body, dict)
            and isinstance(body.get("instances"), (list, np.ndarray))
        )


def input_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """Every file below root but hidden ones (and the output), sorted by relative path."""
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.resolve() != exclude
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def count_inputs(files: list[Path]) -> int:
    """How many inputs the files hold: a .jsonl file's non-empty lines, one per other file."""
    total = 0
    for f in files:
        if f.suffix != ".jsonl":
            total += 1
            continue
        try:
            with f.open(errors="replace") as lines:
                total += sum(1 for line in lines if line.strip())
        except OSError:
            total += 1  # its error line
    return total


def as_body(value, model) -> dict:
    """A v1 or v2 request body from what an input file holds."""
    if isinstance(value, np.ndarray):
        rank = len(model.inputs[0].shape) if len(model.inputs) == 1 else None
        return {"instances": value[np.newaxis] if rank == value.ndim + 1 else value}
    if isinstance(value, list):
        return {"instances": value}
    if isinstance(value, dict) and ("instances" in value or "inputs" in value):
        return value
    raise ValueError('expected {"instances": [...]}, a v2 request {"inputs": [...]} or a list')


def _json(text):
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON: {e}") from None


def read_items(root: Path, files: list[Path], model) -> Iterator[Item]:
    for path in files:
        key = path.relative_to(root).as_posix()
        try:
            if path.suffix == ".npy":
                yield Item(key, as_body(np.load(path, allow_pickle=False), model))
            elif path.suffix == ".json":
                yield Item(key, as_body(_json(path.read_bytes()), model))
            elif path.suffix == ".jsonl":
                with path.open() as f:
                    lines = [(n, line) for n, line in enumerate(f, 1) if line.strip()]
                for n, line in lines:
                    try:
                        yield Item(f"{key}#{n}", as_body(_json(line), model))
                    except ValueError as e:
                        yield Item(f"{key}#{n}", error=str(e))
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                data = base64.b64encode(path.read_bytes()).decode()
                yield Item(key, {"instances": [{"b64": data, "key": key}]})
            elif path.suffix.lower() == TEXT_SUFFIX:
                text = path.read_text(encoding="utf-8")
                yield Item(key, {"instances": [{"text": text, "key": key}]})
            else:
                kinds = ", ".join((*SUFFIXES, "images", TEXT_SUFFIX))
                yield Item(key, error=f"not an input file: expected {kinds}")
        except (OSError, ValueError) as e:
            yield Item(key, error=str(e))


def _error(e: Exception) -> str:
    from kserve.errors import InvalidInput

    return str(e) if isinstance(e, InvalidInput) else f"{type(e).__name__}: {e}"


async def predict_one(model, body: dict):
    """The output of one input: v1 predictions, or the v2 response's outputs."""
    if isinstance(body.get("inputs"), list) and all(
        isinstance(t, dict) and "name" in t for t in body["inputs"]
    ):
        from kserve.protocol.infer_type import InferRequest
        from kserve.protocol.rest.v2_datamodels import InferenceRequest

        request = InferRequest.from_inference_request(
            InferenceRequest.model_validate(body), model.name
        )
        response, _ = await model(request, headers={})
        return response.to_rest()[0]["outputs"]
    response, _ = await model(body, headers={})
    return response.get("predictions", response) if isinstance(response, dict) else response


def _join(instances: list):
    """The instances of several inputs as one: an array where all are arrays of one shape."""
    if all(isinstance(i, np.ndarray) for i in instances):
        if len({(i.shape[1:], i.dtype) for i in instances}) == 1:
            return np.concatenate(instances)
    return [row for i in instances for row in (i.tolist() if isinstance(i, np.ndarray) else i)]


async def predict_batch(model, items: list[Item]) -> list[tuple[object, str | None]]:
    """(output, error) per item: one prediction for all where it works, else one by one."""
    if len(items) > 1:
        parts = [item.body["instances"] for item in items]
        try:
            predictions = await predict_one(model, {"instances": _join(parts)})
            if isinstance(predictions, list) and len(predictions) == sum(map(len, parts)):
                results, start = [], 0
                for part in parts:
                    results.append((predictions[start : start + len(part)], None))
                    start += len(part)
                return results
        except Exception:  # noqa: BLE001 - one bad input: find it below, one by one
            pass
    results = []
    for item in items:
        try:
            results.append((await predict_one(model, item.body), None))
        except Exception as e:  # noqa: BLE001 - an input's error goes on its line
            results.append((None, _error(e)))
    return results


class Progress:
    """`progress=<fraction>` lines on stdout, each time another 1% is done, and at the end."""

    def __init__(self, total: int):
        self.total, self.done, self.shown = total, 0, -1

    def advance(self, n: int):
        self.done += n
        percent = 100 * self.done // self.total if self.total else 100
        if percent > self.shown:
            self.shown = percent
            print(f"progress={self.done / self.total if self.total else 1:.4g}", flush=True)


def run(model, root: Path, output: Path, batch: int) -> tuple[int, int]:
    """Write output's lines for every input below root; (inputs, errors). File reading and
    writing stay out of the event loop, which only runs the predictions."""
    files = input_files(root, exclude=output.resolve())
    progress = Progress(count_inputs(files))
    batch = max(1, min(batch, progress.total // 100))  # progress every 1%
    output.parent.mkdir(parents=True, exist_ok=True)
    count = errors = 0
    with asyncio.Runner() as runner, output.open("w") as out:

        def flush(items: list[Item]):
            nonlocal count, errors
            if not items:
                return
            pending = [i for i in items if i.error is None]
            results = iter(runner.run(predict_batch(model, pending)) if pending else [])
            for item in items:
                result, error = (None, item.error) if item.error else next(results)
                line = {"input": item.key, "output": result, "error": error}
                out.write(json.dumps(line, default=str) + "\n")
                errors += error is not None
            count += len(items)
            out.flush()
            progress.advance(len(items))

        chunk: list[Item] = []
        for item in read_items(root, files, model):
            if item.batchable and len(chunk) < batch:
                chunk.append(item)
                continue
            flush(chunk)
            chunk = [item] if item.batchable else []
            if not item.batchable:
                flush([item])
        flush(chunk)
    if progress.total == 0:
        progress.advance(0)
    return count, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.serving.batch", description=__doc__)
    parser.add_argument("--inputs", required=True, type=Path, help="folder of input files")
    parser.add_argument("--output", required=True, type=Path, help="JSON Lines file to write")
    parser.add_argument("--batch", type=int, default=64, help="v1 inputs predicted together")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if not args.inputs.is_dir():
        log.error("the inputs folder %s does not exist", args.inputs)
        return 2
    from .formats import load_from_env

    try:
        model, _ = load_from_env()
    except ModelLoadError as e:
        log.error("cannot load the model: %s", e)
        return 2
    started = time.monotonic()
    count, errors = run(model, args.inputs, args.output, max(1, args.batch))
    log.info(
        "%s inputs, %s errors, %.1f s: %s", count, errors, time.monotonic() - started, args.output
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
