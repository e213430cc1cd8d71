"""The annotation model: label sets and a sample's annotations, checked and normalised.

A label set is `[{"name", "color", "key"}]`; an annotation is `{"label", "box" (object
detection: pixels), "span" (named entities: character offsets, end exclusive), "annotated_by",
"confidence" (null: a person's), "created"}`. Everything that stores or imports annotations
goes through check_annotations(), so what the database holds always has this shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable
from datetime import datetime

from workbench.times import parse_time, utcnow

from .store import (
    DATASET_TYPES,
    IMAGE_CLASSIFICATION,
    NAMED_ENTITIES,
    OBJECT_DETECTION,
    TEXT_CLASSIFICATION,
)

CLASSIFICATION_TYPES = (IMAGE_CLASSIFICATION, TEXT_CLASSIFICATION)

# distinct colours for labels in the order they are added (Sasha Trubetskoy's 20 colours)
PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#ffe119",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#46f0f0",
    "#f032e6",
    "#bcf60c",
    "#fabebe",
    "#008080",
    "#e6beff",
    "#9a6324",
    "#fffac8",
    "#800000",
    "#aaffc3",
    "#808000",
    "#ffd8b1",
    "#000075",
    "#808080",
)
# keyboard shortcuts given to labels that bring none: digits first, then letters
DEFAULT_KEYS = "123456789abcdefghijklmnopqrstuvwxyz"
MAX_NAME = 64
MAX_ANNOTATED_BY = 255
LABEL_FIELDS = ("name", "color", "key")

_COLOR = re.compile(r"#[0-9a-fA-F]{6}")
_KEY = re.compile(r"[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class AnnotationError(ValueError):
    """A label set or annotations that break the annotation model (the message says how)."""


def check_label_name(name) -> str:
    """A label's name: 1-64 characters, no '/', no control characters, no outer spaces."""
    if not isinstance(name, str) or not name.strip():
        raise AnnotationError(f"A label needs a name (text), not {name!r}.")
    if len(name) > MAX_NAME:
        raise AnnotationError(f"Label name {name[:20]!r}... is longer than {MAX_NAME} characters.")
    if "/" in name or _CONTROL.search(name):
        raise AnnotationError(
            f"Label name {name!r} holds '/' or a control character: use other characters."
        )
    if name != name.strip():
        raise AnnotationError(f"Label name {name!r} starts or ends with spaces: remove them.")
    return name


def check_labels(value) -> list[dict]:
    """A label set, checked: unique names and keys, colours and keys defaulted.

    value: a list of `{"name", "color"?, "key"?}` (or of names). Labels without a colour take
    the first palette colour no other label uses; without a key, the first free of 1..9, a..z
    ("" once those are taken: no shortcut).
    """
    if not isinstance(value, list):
        raise AnnotationError("The labels must be a list of {name, color, key} objects.")
    labels = []
    for item in value:
        label = {"name": item} if isinstance(item, str) else item
        if not isinstance(label, dict):
            raise AnnotationError(f"A label must be an object with a name, not {item!r}.")
        unknown = sorted(set(label) - set(LABEL_FIELDS))
        if unknown:
            raise AnnotationError(
                f"Unknown field {unknown[0]!r} in label {label.get('name')!r}: "
                "a label has a name, a color and a key."
            )
        labels.append(dict(label))
    names: set[str] = set()
    colors: set[str] = set()
    keys: set[str] = set()
    for label in labels:
        name = check_label_name(label.get("name"))
        if name in names:
            raise AnnotationError(f"Label {name!r} is given twice: label names are unique.")
        names.add(name)
        color = label.get("color") or ""
        if color:
            if not isinstance(color, str) or not _COLOR.fullmatch(color):
                raise AnnotationError(
                    f"Colour {color!r} of label {name!r} is not of the form #rrggbb."
                )
            label["color"] = color = color.lower()
            colors.add(color)
        key = label.get("key") or ""
        if key:
            key = key.lower() if isinstance(key, str) else key
            if not isinstance(key, str) or not _KEY.fullmatch(key):
                raise AnnotationError(
                    f"Key {label['key']!r} of label {name!r} must be one letter (a-z) or digit."
                )
            if key in keys:
                raise AnnotationError(f"Key {key!r} is given to two labels: keys are unique.")
            label["key"] = key
            keys.add(key)
    free_colors = [c for c in PALETTE if c not in colors] or list(PALETTE)
    free_keys = iter(k for k in DEFAULT_KEYS if k not in keys)
    defaulted = 0
    for label in labels:
        if not label.get("color"):
            label["color"] = free_colors[defaulted % len(free_colors)]
            defaulted += 1
        if not label.get("key"):
            label["key"] = next(free_keys, "")
    return [{field: label[field] for field in LABEL_FIELDS} for label in labels]


def label_names(annotations: Iterable[dict]) -> list[str]:
    """The distinct labels of annotations, in the order they first appear."""
    return list(dict.fromkeys(a["label"] for a in annotations or ()))


def check_annotations(
    dataset_type: str,
    labels,
    annotations,
    *,
    width: int = 0,
    height: int = 0,
    text: str | None = None,
    multi_label: bool = False,
    annotated_by: str = "",
    now: datetime | None = None,
    key: str = "",
) -> list[dict]:
    """A sample's annotations, checked against its dataset and normalised.

    labels: the label set (label objects or names); width, height: the image's size (0:
    unknown, boxes are then only checked for their order); text: the sample's text (None:
    spans are only checked for their order). Missing annotated_by and created are filled
    from annotated_by and now; box coordinates are rounded to 2 decimals. key names the
    sample in error messages. Raises AnnotationError.
    """
    try:
        return _check(
            dataset_type,
            _names(labels),
            annotations,
            width or 0,
            height or 0,
            text,
            multi_label,
            annotated_by or "",
            _created(now or utcnow()),
        )
    except AnnotationError as e:
        if key:
            raise AnnotationError(f"Sample {key}: {e}") from None
        raise


def _check(dataset_type, names, annotations, width, height, text, multi_label, by, created):
    if dataset_type not in DATASET_TYPES:
        raise AnnotationError(
            f"Unknown dataset type {dataset_type!r}: use one of {', '.join(DATASET_TYPES)}."
        )
    if annotations is None:
        return []
    if not isinstance(annotations, list):
        raise AnnotationError("The annotations must be a list of {label, ...} objects.")
    detection = dataset_type == OBJECT_DETECTION
    entities = dataset_type == NAMED_ENTITIES
    out = []
    for n, item in enumerate(annotations, 1):
        if not isinstance(item, dict):
            raise AnnotationError(f"Annotation {n} is not an object with a label: {item!r:.60}.")
        label = item.get("label")
        if not isinstance(label, str) or label not in names:
            raise AnnotationError(_not_in_set(label, names))
        a = {"label": label}
        box, span = item.get("box"), item.get("span")
        if detection:
            a["box"] = _box(box, label, width, height)
        elif box is not None:
            raise AnnotationError(
                f"Label {label!r} has a box, but boxes belong to {OBJECT_DETECTION} datasets."
            )
        if entities:
            a["span"] = _span(span, label, text)
        elif span is not None:
            raise AnnotationError(
                f"Label {label!r} has a span, but spans belong to {NAMED_ENTITIES} datasets."
            )
        who = item.get("annotated_by") or by
        if not isinstance(who, str) or len(who) > MAX_ANNOTATED_BY:
            raise AnnotationError(f"annotated_by of label {label!r} must be a user or model name.")
        a["annotated_by"] = who
        a["confidence"] = _confidence(item.get("confidence"), label)
        a["created"] = _time(item["created"], label) if item.get("created") else created
        out.append(a)
    if dataset_type in CLASSIFICATION_TYPES:
        seen = set()
        for a in out:
            if a["label"] in seen:
                raise AnnotationError(f"Label {a['label']!r} is given twice.")
            seen.add(a["label"])
        if len(out) > 1 and not multi_label:
            raise AnnotationError(
                f"{len(out)} labels are given, but the dataset takes one label per sample "
                "(multi_label is off)."
            )
    return out


def _names(labels) -> Collection[str]:
    if isinstance(labels, set | frozenset | dict):
        return labels
    return {label["name"] if isinstance(label, dict) else label for label in labels or ()}


def _not_in_set(label, names) -> str:
    if not isinstance(label, str) or not label:
        return "An annotation has no label: give each one a label of the dataset."
    if not names:
        return f"Label {label!r} is not in the dataset's labels, which has none yet: add it first."
    known = sorted(names)
    shown = ", ".join(repr(n) for n in known[:10]) + (", ..." if len(known) > 10 else "")
    return f"Label {label!r} is not in the dataset's labels ({shown}): add it first."


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def round_coordinate(value: float) -> int | float:
    """A pixel coordinate rounded to 2 decimals (an int when whole)."""
    value = round(value, 2)
    return int(value) if type(value) is float and value.is_integer() else value


def _box(box, label, width, height) -> list:
    # the hot path of imports (a COCO file may hold millions of boxes): plain type checks
    out = []
    if type(box) in (list, tuple) and len(box) == 4:
        for v in box:
            kind = type(v)
            if kind is int:
                out.append(v)
            elif kind is float and math.isfinite(v):
                out.append(round_coordinate(v))
            else:
                break
    if len(out) != 4:
        raise AnnotationError(
            f"Label {label!r} needs a box [x_min, y_min, x_max, y_max] of four numbers, "
            f"not {box!r:.60}."
        )
    x_min, y_min, x_max, y_max = box = out
    if x_min >= x_max or y_min >= y_max:
        raise AnnotationError(
            f"Box {box} of label {label!r} is empty: x_min must be below x_max and y_min "
            "below y_max."
        )
    if x_min < 0 or y_min < 0 or (width and x_max > width) or (height and y_max > height):
        if width and height:
            raise AnnotationError(
                f"Box {box} of label {label!r} is outside the {width}x{height} image."
            )
        raise AnnotationError(f"Box {box} of label {label!r} is outside the image.")
    return box


def _span(span, label, text) -> list:
    if (
        not isinstance(span, list | tuple)
        or len(span) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)
    ):
        raise AnnotationError(
            f"Label {label!r} needs a span [start, end] of two character offsets, not {span!r:.60}."
        )
    start, end = span
    if start < 0 or start >= end:
        raise AnnotationError(
            f"Span {list(span)} of label {label!r} is empty: start must be below end "
            "(end is exclusive)."
        )
    if text is not None and end > len(text):
        raise AnnotationError(
            f"Span {list(span)} of label {label!r} is outside the text ({len(text)} characters)."
        )
    return [start, end]


def _confidence(value, label) -> float | None:
    if value is None:
        return None
    if not _number(value) or not 0 <= value <= 1:
        raise AnnotationError(
            f"Confidence {value!r} of label {label!r} must be between 0 and 1 "
            "(or null for a person's label)."
        )
    return float(value)


def _created(value: datetime) -> str:
    return parse_time(value).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(value, label) -> str:
    try:
        return _created(value)
    except (TypeError, ValueError, AttributeError):
        raise AnnotationError(
            f"created {value!r:.40} of label {label!r} is not an ISO 8601 time "
            "(2026-12-02T10:00:00Z)."
        ) from None
