"""YOLO object detection: one labels/*.txt per image (`class x_center y_center width height`,
normalised to the image's size) and the class names in data.yaml (or classes.txt).

A label file lies where Ultralytics looks for it: the image's path with its last images/ folder
turned into labels/ (or else beside the image). Splits come from data.yaml's train and val: a
folder of images or a .txt list of them. Exports list the images of each split in train.txt
and val.txt, as "./<key>" lines.
"""

from __future__ import annotations

import math
from pathlib import Path, PurePosixPath

import yaml

from ..annotations import round_coordinate
from . import (
    IMAGE_SUFFIXES,
    TRAIN,
    VALIDATION,
    Export,
    Folder,
    FormatError,
    Imported,
    Samples,
    image_size,
    label_list,
    safe_relative,
    split_name,
    where_line,
)

SPLIT_KEYS = {"train": TRAIN, "val": VALIDATION}
LIST_FILES = {TRAIN: "train.txt", VALIDATION: "val.txt"}


def label_path(key: PurePosixPath) -> PurePosixPath:
    """Where an image's label file lies: its last images/ folder turned into labels/, or
    beside it."""
    parts = key.parts
    if "images" in parts[:-1]:
        at = len(parts) - 2 - parts[-2::-1].index("images")
        return PurePosixPath(*parts[:at], "labels", *parts[at + 1 :]).with_suffix(".txt")
    return key.with_suffix(".txt")


def read(folder: Path, dataset_type: str, fmt: str = "yolo") -> Imported:
    """The images below folder with the boxes of their label files."""
    files = Folder(folder)
    config, names, where = _names(files)
    samples = Samples(dataset_type, names, where)
    by_key, by_folder = _splits(files, config, where) if config is not None else ({}, [])
    for image in files.walk(IMAGE_SUFFIXES):
        key = files.key(image)
        rel = PurePosixPath(key)
        width, height = image_size(image, key)
        annotations = []
        for candidate in dict.fromkeys((label_path(rel), rel.with_suffix(".txt"))):
            path = files.file(candidate, key)
            if path is not None:
                annotations = _boxes(path, files.key(path), names, where, width, height)
                break
        split = by_key.get(key) or next(
            (split for prefix, split in by_folder if key.startswith(prefix)), ""
        )
        samples.add(key, key, annotations, width=width, height=height, split=split)
    return samples.result()


def _names(files: Folder) -> tuple[dict | None, list[str], str]:
    """data.yaml (None when there is none), the class names and the file that gave them."""
    for path in files.annotation_files(lambda p: p.suffix.lower() in (".yaml", ".yml")):
        where = files.key(path)
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise FormatError(f"{where} does not parse as YAML: {e}.") from None
        if not isinstance(config, dict) or "names" not in config:
            continue
        names = config["names"]
        if isinstance(names, dict):
            if sorted(names) != list(range(len(names))):
                raise FormatError(f"{where}: names must number the classes 0, 1, 2, ...")
            names = [names[i] for i in range(len(names))]
        if not isinstance(names, list):
            raise FormatError(f"{where}: names must be a list of class names.")
        return config, [str(n) if isinstance(n, int | float) else n for n in names], where
    for path in files.annotation_files(lambda p: p.name == "classes.txt" or p.suffix == ".names"):
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise FormatError(f"{files.key(path)} is not UTF-8 text.") from None
        return None, [line.strip() for line in lines if line.strip()], files.key(path)
    raise FormatError("No class names: add a data.yaml with names (or a classes.txt, one a line).")


def _splits(files: Folder, config: dict, where: str):
    """Image key -> split from data.yaml's list files, and (folder prefix, split) pairs."""
    here = PurePosixPath(where).parent
    root = here
    path = config.get("path")
    if isinstance(path, str) and path.strip():
        try:  # a path where the dataset was made does not hold here: then data.yaml's folder
            candidate = here / safe_relative(path, where, "path")
            if (files.root / candidate).is_dir():
                root = candidate
        except FormatError:
            pass
    by_key: dict[str, str] = {}
    by_folder: list[tuple[str, str]] = []
    for name, split in SPLIT_KEYS.items():
        entries = config.get(name)
        entries = [entries] if isinstance(entries, str) else entries or []
        if not isinstance(entries, list):
            raise FormatError(f"{where}: {name} must be a path or a list of paths.")
        for entry in entries:
            rel = root / safe_relative(entry, where, name)
            target = files.root.joinpath(*rel.parts)
            if target.is_dir() and files.holds_folder(target):
                by_folder.append((rel.as_posix().rstrip("/") + "/", split))
            elif target.is_file():
                _list_file(files, rel, split, by_key)
            else:
                raise FormatError(f"{where}: {name} {entry!r} is not in the folder.")
    return by_key, by_folder


def _list_file(files: Folder, rel: PurePosixPath, split: str, by_key: dict) -> None:
    name = rel.as_posix()
    path = files.file(rel, name)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FormatError(f"{name} is not UTF-8 text.") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = where_line(name, n)
        image = files.image(rel.parent / safe_relative(line, where, "image path"), where)
        by_key.setdefault(files.key(image), split)


def _boxes(path: Path, where: str, names: list, names_at: str, width: int, height: int):
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise FormatError(f"{where} is not UTF-8 text.") from None
    out = []
    for n, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        at = where_line(where, n)
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise FormatError(f"{at}: {line.strip()!r:.80} holds something not a number.") from None
        if not all(map(math.isfinite, values)) or values[0] != int(values[0]):
            raise FormatError(f"{at}: the class must be a whole number, not {fields[0]!r}.")
        cls, rest = int(values[0]), values[1:]
        if not 0 <= cls < len(names):
            raise FormatError(
                f"{at}: class {cls} is beyond the {len(names)} names of {names_at} "
                f"(0 to {len(names) - 1})."
            )
        a = {"label": names[cls]}
        if len(rest) in (4, 5):  # x_center y_center width height [confidence]
            cx, cy, w, h = rest[:4]
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            if len(rest) == 5:
                a["confidence"] = rest[4]
        elif len(rest) >= 6 and len(rest) % 2 == 0:  # a polygon: its bounding box
            xs, ys = rest[0::2], rest[1::2]
            box = [min(xs), min(ys), max(xs), max(ys)]
        else:
            raise FormatError(
                f"{at}: expected 'class x_center y_center width height' (normalised), "
                f"not {line.strip()!r:.80}."
            )
        scale = (width, height, width, height)
        a["box"] = [round_coordinate(v * s) for v, s in zip(box, scale, strict=True)]
        out.append(a)
    return out


def write(
    samples: list[dict], labels: list, dataset_type: str, out: Path, source_of, *, fmt="yolo"
) -> None:
    """The images at their keys, their label files, data.yaml and the split lists."""
    names = label_list(labels)
    classes = {name: n for n, name in enumerate(names)}
    export = Export(out, source_of)
    lists: dict[str, list[str]] = {TRAIN: [], VALIDATION: []}
    for sample in samples:
        key = export.place(sample)
        if sample.get("annotations"):
            width, height = export.size(sample)
            lines = []
            for a in sample["annotations"]:
                cls = classes.get(a["label"])
                if cls is None:
                    raise FormatError(f"Sample {key}: label {a['label']!r} is not in the labels.")
                x1, y1, x2, y2 = a["box"]
                lines.append(
                    f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                    f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}\n"
                )
            export.write(label_path(key), "".join(lines))
        split = split_name(sample)
        if split:
            lists[split].append(f"./{key.as_posix()}\n")
    config = {}
    for name, split in SPLIT_KEYS.items():
        if lists[split]:
            export.write(PurePosixPath(LIST_FILES[split]), "".join(lists[split]))
            config[name] = LIST_FILES[split]
    config.update(nc=len(names), names=names)
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    export.write(PurePosixPath("data.yaml"), text)
