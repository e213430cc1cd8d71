"""The model classes, one module per format; only the served format's module is imported."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path

from ..spec import ModelLoadError, ModelSpec, from_env

CLASSES = {
    "onnx": "OnnxModel",
    "pytorch": "TorchModel",
    "tensorflow": "TensorFlowModel",
    "mindspore": "MindSporeModel",
    "sklearn": "SklearnModel",
    "custom": "CustomModel",
}


def make_model(spec: ModelSpec, model_dir: Path):
    """The (not yet loaded) kserve model that serves spec's files in model_dir."""
    module = importlib.import_module(f"{__name__}.{spec.format}")
    return getattr(module, CLASSES[spec.format]).create(spec, Path(model_dir))


def load_from_env(environ: Mapping[str, str] = os.environ):
    """The loaded model the container's environment describes, and the port to serve it on."""
    spec, model_dir, port = from_env(environ)
    model = make_model(spec, model_dir)
    try:
        model.load()
    except ModelLoadError:
        raise
    except Exception as e:  # the framework's own error: say which model it was
        raise ModelLoadError(f"loading the {spec.format} model in {model_dir} failed: {e!r}") from e
    return model, port
