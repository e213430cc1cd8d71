"""What a serving container serves: the model spec in WORKBENCH_MODEL, its folder and port."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FORMATS = ("onnx", "pytorch", "tensorflow", "mindspore", "sklearn", "custom")
# the Open Inference Protocol's tensor datatypes
DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip
DEFAULT_MODEL_DIR = "/mnt/models"
DEFAULT_PORT = 8080


class ModelLoadError(Exception):
    """The model cannot be served: a bad spec, missing or ambiguous files, a failing load."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a signature; -1 in shape is a free dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class ModelSpec:
    """A model version as a serving container sees it (the WORKBENCH_MODEL JSON)."""

    name: str
    version: str = "1"
    format: str = "custom"
    predictor: str = ""
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ModelLoadError(f"WORKBENCH_MODEL is not JSON: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not data["name"]:
            raise ModelLoadError('WORKBENCH_MODEL needs {"name": "<model name>", "format": ...}')
        fmt = data.get("format") or "custom"
        if fmt not in FORMATS:
            raise ModelLoadError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
        signature = data.get("signature") or {}
        if not isinstance(signature, dict):
            raise ModelLoadError('"signature" must be {"inputs": [...], "outputs": [...]}')
        return cls(
            name=data["name"],
            version=str(data.get("version") or "1"),
            format=fmt,
            predictor=data.get("predictor") or "",
            inputs=_tensors(signature.get("inputs"), "inputs"),
            outputs=_tensors(signature.get("outputs"), "outputs"),
        )


def _tensors(items, where: str) -> list[TensorSpec]:
    tensors = []
    for item in items or []:
        try:
            name, datatype, shape = item["name"], str(item["datatype"]).upper(), item["shape"]
            shape = tuple(int(d) for d in shape)
        except (TypeError, KeyError, ValueError):
            raise ModelLoadError(
                f"signature {where}: each needs a name, a datatype and a shape: {item!r}"
            ) from None
        if datatype not in DATATYPES:
            raise ModelLoadError(
                f"signature {where}: {name}: datatype {datatype} is not one of "
                f"{', '.join(DATATYPES)}"
            )
        if any(d < -1 for d in shape):
            raise ModelLoadError(
                f"signature {where}: {name}: shape {list(shape)}: sizes are >= 0 or -1 (any size)"
            )
        tensors.append(TensorSpec(name, datatype, shape))
    if len({t.name for t in tensors}) != len(tensors):
        raise ModelLoadError(f"signature {where}: names repeat")
    return tensors


def from_env(environ: Mapping[str, str] = os.environ) -> tuple[ModelSpec, Path, int]:
    """The spec, the model folder and the port a serving container is started with."""
    if not environ.get("WORKBENCH_MODEL"):
        raise ModelLoadError("WORKBENCH_MODEL is not set: the model spec, as JSON")
    spec = ModelSpec.from_json(environ["WORKBENCH_MODEL"])
    model_dir = Path(environ.get("WORKBENCH_MODEL_DIR") or DEFAULT_MODEL_DIR)
    if not model_dir.is_dir():
        raise ModelLoadError(f"the model folder {model_dir} does not exist")
    try:
        port = int(environ.get("PORT") or DEFAULT_PORT)
    except ValueError:
        raise ModelLoadError(f"PORT is not a number: {environ['PORT']!r}") from None
    return spec, model_dir, port
