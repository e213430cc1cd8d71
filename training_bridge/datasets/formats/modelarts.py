"""ModelArts manifests: JSON lines, one sample each, with its source, usage and annotations.

A line: `{"source": "images/cat-1.jpg" | "s3://bucket/ds/images/cat-1.jpg" | "content://<text>",
"usage": "TRAIN" | "EVAL", "annotation": [{"type": "modelarts/object_detection", "name": "cat",
"property": {"@modelarts:shape": "bndbox", "@modelarts:feature": [[x1, y1], [x2, y2]]},
"annotated-by": "human", "creation-time": "2026-12-02 10:00:00", "confidence": 0.9}]}`.
Object detection lines may instead point at a PASCAL VOC file ("annotation-loc"). Exports add
"split", and "width" and "height" for images; a label set goes to labels.json.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from workbench.times import parse_time

from ..store import IMAGE_CLASSIFICATION, NAMED_ENTITIES, OBJECT_DETECTION, TEXT_CLASSIFICATION
from . import (
    TRAIN,
    VALIDATION,
    Export,
    Folder,
    FormatError,
    Imported,
    Samples,
    check_key,
    image_size,
    label_list,
    label_set,
    safe_relative,
    split_name,
    split_of,
    voc,
    where_line,
)

MANIFEST = "manifest.jsonl"
LABELS = "labels.json"
CONTENT = "content://"
TYPES = {
    IMAGE_CLASSIFICATION: "modelarts/image_classification",
    OBJECT_DETECTION: "modelarts/object_detection",
    TEXT_CLASSIFICATION: "modelarts/text_classification",
    NAMED_ENTITIES: "modelarts/text_entity",
}
USAGES = {TRAIN: "TRAIN", VALIDATION: "EVAL"}
HUMAN = "human"
MODEL = "model:"
SHAPE = "@modelarts:shape"
FEATURE = "@modelarts:feature"
START = "@modelarts:start_index"
END = "@modelarts:end_index"


def read(folder: Path, dataset_type: str, fmt: str = "modelarts") -> Imported:
    """The samples of the manifests at the top of folder (or else below it), line by line."""
    files = Folder(folder)
    manifests = files.annotation_files(lambda p: p.suffix.lower() in (".manifest", ".jsonl"))
    if not manifests:
        raise FormatError(
            f"No manifest: put a {MANIFEST} (or a *.manifest file) at the top of the archive."
        )
    samples = Samples(dataset_type, *_labels(files, manifests[0].parent))
    reader = _Reader(files, samples, dataset_type)
    for manifest in manifests:
        reader.read(manifest)
    return samples.result()


def _labels(files: Folder, where: Path) -> tuple[list[str] | None, str]:
    path = where / LABELS
    if not path.is_file():
        return None, ""
    name = files.key(path)
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(f"{name} does not parse as JSON: {e}.") from None
    if not isinstance(labels, list):
        raise FormatError(f"{name} must hold a list of labels ({{name, color, key}} or names).")
    return [item.get("name") if isinstance(item, dict) else item for item in labels], name


class _Reader:
    """Lines of manifests turned into samples."""

    def __init__(self, files: Folder, samples: Samples, dataset_type: str):
        self.files = files
        self.samples = samples
        self.dataset_type = dataset_type
        self.type = TYPES[dataset_type]
        self.texts = 0
        # a URL's folder -> how many of its leading parts the folder's paths leave out
        self._drop: dict[tuple[str, ...], int] = {}

    def read(self, manifest: Path) -> None:
        name = self.files.key(manifest)
        base = PurePosixPath(name).parent
        try:
            with manifest.open(encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        self.line(line, where_line(name, n), base)
        except UnicodeDecodeError:
            raise FormatError(f"{name} is not UTF-8 text.") from None

    def line(self, line: str, where: str, base: PurePosixPath) -> None:
        try:
            entry = json.loads(line)
        except ValueError as e:
            raise FormatError(f"{where} is not JSON: {getattr(e, 'msg', e)}.") from None
        if not isinstance(entry, dict):
            raise FormatError(f"{where} is not a JSON object with a source.")
        source = entry.get("source")
        if not isinstance(source, str) or not source:
            raise FormatError(f"{where} has no source.")
        text = None
        width, height = _size(entry.get("width")), _size(entry.get("height"))
        if self.samples.text:
            if source.startswith(CONTENT):
                self.texts += 1
                key, text = f"texts/{self.texts:06d}.txt", source[len(CONTENT) :]
            else:
                key, path = self.resolve(source, where, base)
                try:
                    text = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise FormatError(f"{where}: {key} is not UTF-8 text.") from None
        else:
            if source.startswith(CONTENT):
                raise FormatError(f"{where}: an image dataset's source cannot be inline content.")
            key, path = self.resolve(source, where, base)
        annotations, size = self.annotations(entry.get("annotation"), where, base)
        if size:
            width, height = size
        if self.samples.detection and annotations and not (width and height):
            width, height = image_size(path, where)
        split = (
            split_of(entry["split"], where)
            if entry.get("split") is not None
            else split_of(entry.get("usage"), where)
        )
        self.samples.add(
            where, key, annotations, text=text, width=width, height=height, split=split
        )

    def resolve(self, source: str, where: str, base: PurePosixPath, what: str = "source"):
        """The key and file of a source: a path relative to the manifest, or a URL whose path
        ends in one of the folder's files."""
        if "://" not in source:
            rel = safe_relative(source, where, what)
            found = self.files.find(rel, dict.fromkeys((base, PurePosixPath())), where)
            if found is None:
                raise FormatError(f"{where}: {what} {source} is not in the folder.")
            return self.files.key(found[1]), found[1]
        parts = [p for p in source.partition("://")[2].split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise FormatError(f"{where}: the {what} {source!r:.200} leaves the dataset folder.")
        folder = tuple(parts[:-1])
        known = self._drop.get(folder)
        for drop in ([known] if known is not None else []) + list(range(len(parts))):
            path = self.files.file(PurePosixPath(*parts[drop:]), where)
            if path is not None:
                self._drop[folder] = drop
                return self.files.key(path), path
        raise FormatError(
            f"{where}: {what} {source} is not in the folder: put the file at a path its URL "
            f"ends with (such as {parts[-1]})."
        )

    def annotations(self, value, where: str, base: PurePosixPath):
        """A line's annotations in the annotation model, and the image size a VOC file gave."""
        if value is None:
            return [], None
        if not isinstance(value, list):
            raise FormatError(f"{where}: annotation must be a list.")
        out, size = [], None
        for item in value:
            if not isinstance(item, dict):
                raise FormatError(f"{where}: an annotation is not an object: {item!r:.60}.")
            kind = item.get("type")
            if kind != self.type:
                raise FormatError(
                    f"{where}: annotation type {kind!r} does not fit a {self.dataset_type} "
                    f"dataset ({self.type} does)."
                )
            common = _common(item)
            if self.samples.detection and item.get("annotation-loc") is not None:
                objects, size = self.voc(item["annotation-loc"], where, base)
                out.extend({**o, **common} for o in objects)
                continue
            a = {"label": item.get("name"), **common}
            prop = item.get("property") or {}
            if not isinstance(prop, dict):
                raise FormatError(f"{where}: property of label {a['label']!r} is not an object.")
            if self.samples.detection:
                a["box"] = _box(prop, a["label"], where)
            elif self.dataset_type == NAMED_ENTITIES:
                a["span"] = [prop.get(START), prop.get(END)]
            out.append(a)
        return out, size

    def voc(self, loc, where: str, base: PurePosixPath):
        if not isinstance(loc, str):
            raise FormatError(f"{where}: annotation-loc must be a path.")
        key, path = self.resolve(loc, where, base, "annotation-loc")
        parsed = voc.parse(path, f"{where}: {key}")
        if parsed is None:
            raise FormatError(f"{where}: {key} is not a PASCAL VOC annotation.")
        _, width, height, objects = parsed
        return objects, (width, height) if width and height else None


def _size(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _common(item: dict) -> dict:
    """An annotation's author, confidence and time, in the annotation model's words."""
    out = {}
    by = item.get("annotated-by")
    if isinstance(by, str) and by and by != HUMAN:
        out["annotated_by"] = by if by.startswith(MODEL) else MODEL + by
    if item.get("confidence") is not None:
        out["confidence"] = item["confidence"]
    if item.get("creation-time"):
        out["created"] = item["creation-time"]
    return out


def _box(prop: dict, label, where: str) -> list:
    shape, feature = prop.get(SHAPE), prop.get(FEATURE)
    if shape != "bndbox":
        raise FormatError(
            f"{where}: shape {shape!r} of label {label!r} is not supported: only bndbox is."
        )
    if (
        not isinstance(feature, list)
        or len(feature) != 2
        or not all(isinstance(p, list) and len(p) == 2 for p in feature)
    ):
        raise FormatError(
            f"{where}: the bndbox of label {label!r} must be [[x_min, y_min], [x_max, y_max]]."
        )
    return [feature[0][0], feature[0][1], feature[1][0], feature[1][1]]


def write(
    samples: list[dict],
    labels: list,
    dataset_type: str,
    out: Path,
    source_of,
    *,
    fmt: str = "modelarts",
    files_under: str = "",
) -> None:
    """manifest.jsonl (sources relative to it), labels.json, and the files at their keys (or
    under files_under: a published version keeps them in data/)."""
    export = Export(out, source_of)
    prefix = safe_relative(files_under, "files_under") if files_under else None
    sets = label_set(labels)
    export.write(PurePosixPath(LABELS), json.dumps(sets, ensure_ascii=False, indent=1) + "\n")
    known = set(label_list(labels))
    with export.open(PurePosixPath(MANIFEST)) as f:
        for sample in samples:
            key = check_key(sample["key"])
            for a in sample.get("annotations") or ():
                if a["label"] not in known:
                    raise FormatError(f"Sample {key}: label {a['label']!r} is not in the labels.")
            source = export.place(sample, prefix / key if prefix else key)
            line = manifest_line(sample, dataset_type, source.as_posix())
            f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
            f.write("\n")


def manifest_line(sample: dict, dataset_type: str, source: str) -> dict:
    """A sample's manifest line, its file at source."""
    line = {"source": source}
    split = split_name(sample)
    if split:
        line["usage"] = USAGES[split]
    line["split"] = split
    if sample.get("width") and sample.get("height"):
        line["width"], line["height"] = sample["width"], sample["height"]
    line["annotation"] = [_annotation(a, dataset_type) for a in sample.get("annotations") or ()]
    return line


def _annotation(a: dict, dataset_type: str) -> dict:
    entry = {"type": TYPES[dataset_type], "name": a["label"]}
    if dataset_type == OBJECT_DETECTION:
        x1, y1, x2, y2 = a["box"]
        entry["property"] = {SHAPE: "bndbox", FEATURE: [[x1, y1], [x2, y2]]}
    elif dataset_type == NAMED_ENTITIES:
        entry["property"] = {START: a["span"][0], END: a["span"][1]}
    by = a.get("annotated_by") or ""
    entry["annotated-by"] = by[len(MODEL) :] if by.startswith(MODEL) else HUMAN
    if a.get("created"):
        entry["creation-time"] = parse_time(a["created"]).strftime("%Y-%m-%d %H:%M:%S")
    if a.get("confidence") is not None:
        entry["confidence"] = a["confidence"]
    return entry
