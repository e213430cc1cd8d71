"""Finding a model's files in its folder, and loading a predictor class from a file there."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .spec import ModelLoadError


def model_file(folder: Path, patterns: tuple[str, ...], what: str, preferred: str = "") -> Path:
    """The one file of folder (or below it) matching patterns: `preferred` where it exists;
    otherwise exactly one match, or a ModelLoadError that says what was found."""
    if preferred and (folder / preferred).is_file():
        return folder / preferred
    found = sorted({p for pattern in patterns for p in folder.rglob(pattern) if p.is_file()})
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelLoadError(f"no {what} ({', '.join(patterns)}) in {folder}")
    names = ", ".join(str(p.relative_to(folder)) for p in found[:5])
    raise ModelLoadError(
        f"{len(found)} candidates for {what} in {folder} ({names}): keep one"
        + (f" or name it {preferred}" if preferred else "")
    )


def load_class(folder: Path, predictor: str) -> type:
    """The class a predictor reference ("file.py:Class", relative to folder) names; the folder
    goes first on sys.path so that the file can import its neighbours."""
    file, sep, name = predictor.partition(":")
    if not sep or not file.endswith(".py") or not name.isidentifier():
        raise ModelLoadError(f"predictor {predictor!r}: expected 'file.py:ClassName'")
    path = (folder / file).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        raise ModelLoadError(f"predictor file {file} is not in the model folder {folder}")
    sys.dont_write_bytecode = True  # the folder is mounted read-only
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    module_name = "workbench_predictor_" + path.stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise ModelLoadError(f"predictor file {file} failed to import: {e!r}") from e
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        raise ModelLoadError(f"predictor file {file} defines no class {name}")
    return cls
