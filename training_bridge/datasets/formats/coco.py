"""COCO object detection: annotations/instances_<split>.json with images (file_name, width,
height), annotations (bbox [x, y, width, height] in pixels) and categories.

Exports put each image at its key (file_name, relative to the folder that holds annotations/)
and one file per split: instances_train.json, instances_validation.json and, for samples in
neither, instances_default.json. Each file is written in one pass.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from ..annotations import round_coordinate
from . import (
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
)

FILE_NAMES = {"": "default", TRAIN: "train", VALIDATION: "validation"}


def read(folder: Path, dataset_type: str, fmt: str = "coco") -> Imported:
    """The samples of the COCO files in annotations/ (or else the .json files at the top of the
    folder, or else anywhere below it)."""
    files = Folder(folder)
    top = folder / "annotations"
    if top.is_dir():
        paths = sorted(p for p in top.iterdir() if p.suffix.lower() == ".json" and p.is_file())
    else:
        paths = files.annotation_files(lambda p: p.suffix.lower() == ".json")
    samples = Samples(dataset_type)
    found = False
    for path in paths:
        where = files.key(path)
        try:
            with path.open("rb") as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise FormatError(f"{where} does not parse as JSON: {e}.") from None
        if isinstance(data, dict) and "images" in data:
            _read(files, samples, data, where)
            found = True
    if not found:
        raise FormatError(
            "No COCO annotation file: expected annotations/*.json (or a .json file at the top) "
            "with images, annotations and categories."
        )
    return samples.result()


def _list(data: dict, name: str, where: str) -> list:
    value = data.get(name, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise FormatError(f"{where}: {name} must be a list of objects.")
    return value


def _read(files: Folder, samples: Samples, data: dict, where: str) -> None:
    categories = {}
    for n, category in enumerate(_list(data, "categories", where), 1):
        if not _hashable(category.get("id")) or "name" not in category:
            raise FormatError(f"{where}: category {n} needs an id and a name.")
        label = category["name"].strip() if isinstance(category["name"], str) else None
        categories[category["id"]] = samples.label(label, f"{where}: category {n}")
    images = {}
    for n, image in enumerate(_list(data, "images", where), 1):
        if not isinstance(image.get("id"), int | str) or not image.get("file_name"):
            raise FormatError(f"{where}: image {n} needs an id and a file_name.")
        if image["id"] in images:
            raise FormatError(f"{where}: image id {image['id']} is given twice.")
        images[image["id"]] = (image, [])
    for n, ann in enumerate(_list(data, "annotations", where), 1):
        ident = ann.get("id", n)
        held = images.get(ann.get("image_id")) if _hashable(ann.get("image_id")) else None
        if held is None:
            raise FormatError(
                f"{where}: annotation {ident} is of image {ann.get('image_id')!r}, "
                "which is not in images."
            )
        label = (
            categories.get(ann.get("category_id")) if _hashable(ann.get("category_id")) else None
        )
        if label is None:
            raise FormatError(
                f"{where}: annotation {ident} has category {ann.get('category_id')!r}, "
                "which is not in categories."
            )
        bbox = ann.get("bbox")
        if type(bbox) is not list or len(bbox) != 4 or not all(map(_number, bbox)):
            raise FormatError(
                f"{where}: annotation {ident} needs a bbox [x, y, width, height], not {bbox!r:.60}."
            )
        x, y, w, h = bbox
        a = {"label": label, "box": [x, y, round_coordinate(x + w), round_coordinate(y + h)]}
        if ann.get("score") is not None:
            a["confidence"] = ann["score"]
        held[1].append(a)
    stem = PurePosixPath(where).stem.lower()
    split = TRAIN if "train" in stem else VALIDATION if "val" in stem else ""
    here = PurePosixPath(where).parent
    subset = stem.removeprefix("instances_")
    bases = list(
        dict.fromkeys(
            (
                PurePosixPath(),
                here.parent,
                here,
                PurePosixPath("images"),
                here.parent / "images",
                here / "images",
                PurePosixPath("images", subset),
                here.parent / "images" / subset,
            )
        )
    )
    for image, boxes in images.values():
        at = f"{where}: image {image['id']}"
        name = safe_relative(image["file_name"], at, "file_name")
        found = files.find(name, bases, at)
        if found is None:
            raise FormatError(f"{at}: {image['file_name']} is not in the folder.")
        base, path = found
        if bases[0] != base:  # the next images are most likely beside this one
            bases.remove(base)
            bases.insert(0, base)
        width, height = _size(image.get("width")), _size(image.get("height"))
        if not (width and height):
            width, height = image_size(path, at)
        samples.add(
            f"{at} ({image['file_name']})",
            files.key(path),
            boxes,
            width=width,
            height=height,
            split=split,
        )


def _hashable(value) -> bool:
    return isinstance(value, int | str)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _size(value) -> int:
    return int(value) if _number(value) and value > 0 else 0


def write(
    samples: list[dict], labels: list, dataset_type: str, out: Path, source_of, *, fmt="coco"
) -> None:
    """The images at their keys and annotations/instances_<split>.json."""
    names = label_list(labels)
    ids = {name: n for n, name in enumerate(names, 1)}
    categories = [{"id": n, "name": name, "supercategory": ""} for name, n in ids.items()]
    export = Export(out, source_of)
    documents: dict[str, tuple[list, list]] = {}
    next_id = 1
    for image_id, sample in enumerate(samples, 1):
        key = export.place(sample)
        width, height = export.size(sample)
        images, annotations = documents.setdefault(split_name(sample), ([], []))
        images.append(
            {"id": image_id, "file_name": key.as_posix(), "width": width, "height": height}
        )
        for a in sample.get("annotations") or ():
            category = ids.get(a["label"])
            if category is None:
                raise FormatError(f"Sample {key}: label {a['label']!r} is not in the labels.")
            x1, y1, x2, y2 = a["box"]
            w, h = round_coordinate(x2 - x1), round_coordinate(y2 - y1)
            ann = {
                "id": next_id,
                "image_id": image_id,
                "category_id": category,
                "bbox": [x1, y1, w, h],
                "area": round_coordinate(w * h),
                "iscrowd": 0,
                "segmentation": [],
            }
            if a.get("confidence") is not None:
                ann["score"] = a["confidence"]
            annotations.append(ann)
            next_id += 1
    if not documents:
        documents[""] = ([], [])
    for split, (images, annotations) in documents.items():
        document = {
            "info": {"description": "", "version": "1.0"},
            "licenses": [],
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        # json.dumps runs in C; json.dump would encode piece by piece in Python
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        export.write(PurePosixPath("annotations", f"instances_{FILE_NAMES[split]}.json"), text)
