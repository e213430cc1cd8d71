"""Import and export formats of datasets: ModelArts manifests, COCO, PASCAL VOC, YOLO, CSV and
JSON lines, read from and written to plain folders (no database, no network).

read() turns a folder (an unpacked archive) into in-memory samples `{"key", "text", "width",
"height", "annotations", "split"}` whose keys are paths relative to the folder (text formats
make keys for inline texts); write() makes a complete export folder: the annotation files and
the samples' files, hard-linked (or copied) from where source_of(sample) says they are.
Nothing a folder holds can point outside it: absolute paths, '..' and links that leave it are
refused with a FormatError that names the file and the line or entry.
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from ..annotations import AnnotationError, check_annotations, check_label_name, check_labels
from ..store import (
    DATASET_TYPES,
    IMAGE_TYPES,
    NAMED_ENTITIES,
    OBJECT_DETECTION,
    TEXT_CLASSIFICATION,
)

TRAIN = "train"
VALIDATION = "validation"
SPLITS = ("", TRAIN, VALIDATION)
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".jfif"}
)
# boxes that other tools round past the image's edge by up to a pixel are fitted to it
EDGE_TOLERANCE = 1.0


class FormatError(ValueError):
    """Files that do not hold a dataset in the format asked for (the message says where)."""


@dataclass(frozen=True)
class Format:
    """An import and export format: its name, title and the dataset types it holds."""

    name: str
    title: str
    types: tuple[str, ...]
    module: str


TEXT_TYPES = (TEXT_CLASSIFICATION, NAMED_ENTITIES)
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("modelarts", "ModelArts manifest (JSON lines)", DATASET_TYPES, "modelarts"),
        Format("coco", "COCO (instances JSON)", (OBJECT_DETECTION,), "coco"),
        Format("voc", "PASCAL VOC (one XML per image)", (OBJECT_DETECTION,), "voc"),
        Format("yolo", "YOLO (images/, labels/, data.yaml)", (OBJECT_DETECTION,), "yolo"),
        Format("csv", "CSV (text, label or entities)", TEXT_TYPES, "text"),
        Format("jsonl", "JSON lines (text, label or entities)", TEXT_TYPES, "text"),
    )
}


class Imported(NamedTuple):
    """What read() found: the samples and the label names, in the order the files give them."""

    samples: list[dict]
    labels: list[str]


def formats_for(dataset_type: str) -> list[str]:
    """The formats that hold datasets of a type."""
    return [f.name for f in FORMATS.values() if dataset_type in f.types]


def read(fmt: str, folder: Path, dataset_type: str) -> Imported:
    """The samples and labels of a folder in format fmt. Classification samples may come with
    several labels each (multi_label is the dataset's to check). Raises FormatError."""
    spec = _format(fmt, dataset_type)
    folder = Path(folder)
    if not folder.is_dir():
        raise FormatError(f"{folder} is not a folder.")
    return importlib.import_module(f"{__name__}.{spec.module}").read(folder, dataset_type, fmt)


def write(
    fmt: str,
    samples: Iterable[dict],
    labels: list,
    dataset_type: str,
    out: Path,
    source_of: Callable[[dict], Path | None],
    **options,
) -> None:
    """Writes samples in format fmt into the folder out: annotation files and the samples'
    files (hard links to, or copies of, source_of(sample); a text sample's file is written
    from its text when source_of gives None). labels: the label set (objects or names), whose
    order gives class numbers. Raises FormatError."""
    spec = _format(fmt, dataset_type)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(f"{__name__}.{spec.module}")
    module.write(list(samples), labels, dataset_type, out, source_of, fmt=fmt, **options)


def _format(fmt: str, dataset_type: str) -> Format:
    spec = FORMATS.get(fmt)
    if spec is None:
        raise FormatError(f"Unknown format {fmt!r}: use one of {', '.join(FORMATS)}.")
    if dataset_type not in spec.types:
        raise FormatError(
            f"The {fmt} format does not hold {dataset_type} datasets: use one of "
            f"{', '.join(formats_for(dataset_type)) or 'none'}."
        )
    return spec


# --- reading ---------------------------------------------------------------------------------


def safe_relative(path, where: str, what: str = "path") -> PurePosixPath:
    """A path named by a file, relative to the folder and without '..' (Windows separators
    are taken as '/'). Raises FormatError."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise FormatError(f"{where}: the {what} is missing or not text: {path!r:.80}.")
    p = PurePosixPath(path.strip().replace("\\", "/"))
    parts = [part for part in p.parts if part != "."]
    if p.is_absolute() or ":" in p.parts[0] or ".." in parts or not parts:
        raise FormatError(
            f"{where}: the {what} {path!r:.200} leaves the dataset folder: give paths "
            "relative to it, without '..'."
        )
    return PurePosixPath(*parts)


def image_size(path: Path, where: str) -> tuple[int, int]:
    """An image's width and height, from its header."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise FormatError(f"{where}: {path.name} is not an image Pillow can read ({e}).") from None


class Folder:
    """The folder being read: its files as keys, never anything outside it."""

    def __init__(self, root: Path):
        self.root = root
        self.real = os.path.realpath(root)
        self._dirs: dict[str, str] = {}

    def key(self, path: Path) -> str:
        """A file's key: its path relative to the folder."""
        return path.relative_to(self.root).as_posix()

    def inside(self, path: Path) -> bool:
        """Whether a path (following links) stays in the folder."""
        parent = str(path.parent)
        real = self._dirs.get(parent)
        if real is None:
            real = self._dirs[parent] = os.path.realpath(parent)
        if not self._below(real):
            return False
        return not path.is_symlink() or self._below(os.path.realpath(path))

    def holds_folder(self, path: Path) -> bool:
        """Whether a folder (following links) is this folder or below it."""
        return self._below(os.path.realpath(path))

    def _below(self, real: str) -> bool:
        return real == self.real or real.startswith(self.real.rstrip(os.sep) + os.sep)

    def file(self, rel: PurePosixPath, where: str) -> Path | None:
        """The file at rel, None when there is none; FormatError when a link leaves the folder."""
        path = self.root.joinpath(*rel.parts)
        if not path.is_file():
            return None
        if not self.inside(path):
            raise FormatError(f"{where}: {rel} links outside the dataset folder.")
        return path

    def find(
        self, rel: PurePosixPath, bases: Iterable[PurePosixPath], where: str
    ) -> tuple[PurePosixPath, Path] | None:
        """The first file at base/rel: the base that held it and the file."""
        for base in bases:
            path = self.file(base / rel, where)
            if path is not None:
                return base, path
        return None

    def walk(self, suffixes: Iterable[str] | None = None) -> Iterator[Path]:
        """The files below the folder, sorted, without hidden ones (nor macOS's __MACOSX)."""
        suffixes = frozenset(suffixes) if suffixes is not None else None
        for top, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "__MACOSX")
            for name in sorted(files):
                if name.startswith("."):
                    continue
                path = Path(top, name)
                if suffixes is None or path.suffix.lower() in suffixes:
                    if not self.inside(path):
                        raise FormatError(f"{self.key(path)} links outside the dataset folder.")
                    yield path

    def annotation_files(self, match: Callable[[Path], bool]) -> list[Path]:
        """The files that match at the top of the folder, or else anywhere below it."""
        top = sorted(p for p in self.root.iterdir() if p.is_file() and match(p))
        return top or [p for p in self.walk() if match(p)]

    def image(self, rel: PurePosixPath, where: str) -> Path:
        """The image at rel, which must be there."""
        path = self.file(rel, where)
        if path is None:
            raise FormatError(f"{where}: {rel} is not in the folder.")
        return path


def split_of(value, where: str) -> str:
    """A split from the names other tools give it."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormatError(f"{where}: the split {value!r} is not text.")
    name = value.strip().lower()
    if name in ("", "test", "inference", "none"):
        return ""
    if name in ("train", "training", "trainval"):
        return TRAIN
    if name in ("val", "valid", "validation", "eval", "evaluation"):
        return VALIDATION
    raise FormatError(f"{where}: unknown split {value!r}: use train or validation.")


class Samples:
    """Samples being read: unique keys, checked annotations, labels in the order first seen
    (or a label set the format gives, which annotations must keep to)."""

    def __init__(self, dataset_type: str, labels: Iterable[str] | None = None, where: str = ""):
        self.dataset_type = dataset_type
        self.detection = dataset_type == OBJECT_DETECTION
        self.text = dataset_type not in IMAGE_TYPES
        self.fixed = False
        self.labels: dict[str, None] = {}
        for name in labels or ():
            self.label(name, where)
        self.fixed = labels is not None
        self.samples: list[dict] = []
        self._where: dict[str, str] = {}

    def label(self, name, where: str) -> str:
        """A label name the files give, checked."""
        if isinstance(name, str) and name in self.labels:
            return name
        if self.fixed:
            raise FormatError(f"{where}: label {name!r} is not in the label set of the files.")
        try:
            check_label_name(name)
        except AnnotationError as e:
            raise FormatError(f"{where}: {e}") from None
        self.labels[name] = None
        return name

    def add(
        self,
        where: str,
        key: str,
        annotations: list[dict],
        *,
        text: str | None = None,
        width: int = 0,
        height: int = 0,
        split: str = "",
    ) -> dict:
        """A sample, once its key is known to be new and its annotations fit the model."""
        if key in self._where:
            raise FormatError(f"{where}: {key} is already described by {self._where[key]}.")
        if self.text and text is None:
            raise FormatError(f"{where}: the sample {key} has no text.")
        for a in annotations:
            label = a.get("label")
            if not self.fixed and isinstance(label, str):
                self.label(label, where)
            if self.detection and width and height and isinstance(a.get("box"), list):
                a["box"] = fit_box(a["box"], width, height)
        try:
            checked = check_annotations(
                self.dataset_type,
                self.labels,
                annotations,
                width=width,
                height=height,
                text=text,
                multi_label=True,
            )
        except AnnotationError as e:
            raise FormatError(f"{where}: {e}") from None
        self._where[key] = where
        sample = {
            "key": key,
            "text": text,
            "width": width,
            "height": height,
            "annotations": checked,
            "split": split,
        }
        self.samples.append(sample)
        return sample

    def result(self) -> Imported:
        return Imported(self.samples, list(self.labels))


def fit_box(box: list, width: int, height: int) -> list:
    """A box fitted to the image where it passes an edge by less than EDGE_TOLERANCE."""
    try:
        if box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height:
            return box
    except (TypeError, IndexError):
        return box  # not a box: check_annotations says what is wrong
    fitted = []
    for value, limit in zip(box, (width, height, width, height), strict=False):
        if isinstance(value, int | float) and not isinstance(value, bool):
            if -EDGE_TOLERANCE <= value < 0:
                value = 0
            elif limit < value <= limit + EDGE_TOLERANCE:
                value = limit
        fitted.append(value)
    return fitted


def where_line(name: str, line: int) -> str:
    return f"{name} line {line}"


# --- writing ---------------------------------------------------------------------------------


def label_list(labels: list) -> list[str]:
    """The label names of a label set (objects or names)."""
    return [label["name"] if isinstance(label, dict) else label for label in labels]


def label_set(labels: list) -> list[dict]:
    """A label set with its colours and keys, from objects or names."""
    try:
        return check_labels(list(labels))
    except AnnotationError as e:
        raise FormatError(str(e)) from None


def check_key(key) -> PurePosixPath:
    """A sample's key as a path under the export folder."""
    return safe_relative(key, f"sample {key!r:.200}", "key")


class Export:
    """An export folder being filled with the samples' files and the format's own files.

    Every file is created new (never opened if it exists): a sample's file is a hard link to
    its source, and writing through it would change the source.
    """

    def __init__(self, out: Path, source_of: Callable[[dict], Path | None]):
        self.out = out
        self.source_of = source_of
        self._made: set[Path] = set()

    def path(self, rel: PurePosixPath) -> Path:
        """out/rel, its folder made."""
        path = self.out.joinpath(*rel.parts)
        parent = path.parent
        if parent not in self._made:
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise FormatError(
                    f"{rel} cannot be exported: a sample's file is where its folder would be."
                ) from None
            self._made.add(parent)
        return path

    def open(self, rel: PurePosixPath, mode: str = "w"):
        """A new file of the format at out/rel, to write (FormatError if something is there)."""
        path = self.path(rel)
        try:
            if "b" in mode:
                return path.open(mode.replace("w", "x"))
            return path.open(mode.replace("w", "x"), encoding="utf-8", newline="")
        except FileExistsError:
            raise FormatError(
                f"{rel} is both a sample and a file the format writes: rename the sample."
            ) from None

    def write(self, rel: PurePosixPath, data: str | bytes) -> None:
        """A new file of the format at out/rel with data."""
        with self.open(rel, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)

    def place(self, sample: dict, rel: PurePosixPath | None = None) -> PurePosixPath:
        """Puts a sample's file at out/rel (its key by default): a hard link to its source, a
        copy where links cannot be made, its text when it has no source."""
        rel = rel or check_key(sample["key"])
        dst = self.path(rel)
        src = self.source_of(sample)
        try:
            if src is None:
                if sample.get("text") is None:
                    raise FormatError(f"Sample {sample['key']} has no file to export.")
                with dst.open("x", encoding="utf-8") as f:
                    f.write(sample["text"])
                return rel
            try:
                os.link(src, dst)
            except FileExistsError:
                raise
            except OSError:  # another file system, or links not allowed: a copy
                with open(src, "rb") as source, dst.open("xb") as copy:
                    shutil.copyfileobj(source, copy, 1024 * 1024)
        except FileExistsError:
            raise FormatError(
                f"Two files are exported to {rel}: sample keys must differ from each other "
                "and from the format's files."
            ) from None
        return rel

    def text(self, sample: dict) -> str:
        """A text sample's text (read from its file when the sample does not hold it)."""
        if sample.get("text") is not None:
            return sample["text"]
        src = self.source_of(sample)
        if src is None:
            raise FormatError(f"Sample {sample['key']} has no text to export.")
        try:
            return Path(src).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"Sample {sample['key']} is not UTF-8 text.") from None

    def size(self, sample: dict) -> tuple[int, int]:
        """An image sample's width and height (measured when the sample does not know them)."""
        if sample.get("width") and sample.get("height"):
            return sample["width"], sample["height"]
        src = self.source_of(sample)
        if src is None:
            raise FormatError(f"Sample {sample['key']} has no image to measure.")
        return image_size(Path(src), f"sample {sample['key']}")


def split_name(sample: dict) -> str:
    split = sample.get("split") or ""
    if split not in SPLITS:
        raise FormatError(f"Sample {sample['key']} has an unknown split {split!r}.")
    return split
