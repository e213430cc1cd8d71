"""Text datasets as CSV or JSON lines: one text a row, with its label(s) or entities.

Columns (CSV, first row) or fields (JSON lines): `text` (needed), `label` (classification:
several joined by "|" in CSV, a list in JSON lines) or `entities` (named entities: a JSON list
of {"start", "end", "label"}, end exclusive), and optionally `key` and `split`. Rows without a
key get texts/000001.txt, ... in the order read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path, PurePosixPath

from ..store import NAMED_ENTITIES
from . import (
    Export,
    Folder,
    FormatError,
    Imported,
    Samples,
    check_key,
    safe_relative,
    split_name,
    split_of,
    where_line,
)

SUFFIXES = {"csv": (".csv",), "jsonl": (".jsonl", ".ndjson")}
FILE_NAMES = {"csv": "dataset.csv", "jsonl": "dataset.jsonl"}
SEPARATOR = "|"


def read(folder: Path, dataset_type: str, fmt: str) -> Imported:
    """The texts of the .csv (or .jsonl) files at the top of folder, or else below it."""
    files = Folder(folder)
    paths = files.annotation_files(lambda p: p.suffix.lower() in SUFFIXES[fmt])
    if not paths:
        raise FormatError(
            f"No {SUFFIXES[fmt][0]} file: put the texts in one, "
            + (
                "with a first row naming the columns (text, label or entities)."
                if fmt == "csv"
                else "one JSON object a line with text and label or entities."
            )
        )
    reader = _Reader(files, Samples(dataset_type), dataset_type)
    for path in paths:
        (reader.csv if fmt == "csv" else reader.jsonl)(path)
    return reader.samples.result()


class _Reader:
    """Rows turned into samples."""

    def __init__(self, files: Folder, samples: Samples, dataset_type: str):
        self.files = files
        self.samples = samples
        self.entities = dataset_type == NAMED_ENTITIES
        self.count = 0

    def csv(self, path: Path) -> None:
        name = self.files.key(path)
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                rows = csv.reader(f)
                header = next(rows, None)
                if header is None:
                    raise FormatError(f"{name} is empty: its first row must name the columns.")
                columns = [c.strip().lower() for c in header]
                if "text" not in columns:
                    raise FormatError(
                        f"{name} has no 'text' column: its first row must name the columns "
                        f"(text, {'entities' if self.entities else 'label'}), not "
                        f"{', '.join(header)[:100]}."
                    )
                for row in rows:
                    if any(cell.strip() for cell in row):
                        self.row(
                            dict(zip(columns, row, strict=False)), where_line(name, rows.line_num)
                        )
        except csv.Error as e:
            raise FormatError(f"{name}: {e}.") from None
        except UnicodeDecodeError:
            raise FormatError(f"{name} is not UTF-8 text.") from None

    def jsonl(self, path: Path) -> None:
        name = self.files.key(path)
        try:
            with path.open(encoding="utf-8-sig") as f:
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    where = where_line(name, n)
                    try:
                        entry = json.loads(line)
                    except ValueError as e:
                        raise FormatError(f"{where} is not JSON: {getattr(e, 'msg', e)}.") from None
                    if not isinstance(entry, dict):
                        raise FormatError(f"{where} is not a JSON object with a text.")
                    self.row(entry, where)
        except UnicodeDecodeError:
            raise FormatError(f"{name} is not UTF-8 text.") from None

    def row(self, row: dict, where: str) -> None:
        text = row.get("text")
        if not isinstance(text, str) or not text:
            raise FormatError(f"{where} has no text.")
        self.count += 1
        key = row.get("key")
        key = safe_relative(key, where, "key").as_posix() if key else f"texts/{self.count:06d}.txt"
        if self.entities:
            annotations = self.spans(row.get("entities"), where)
        else:
            annotations = [{"label": label} for label in self.labels(row.get("label"), where)]
        split = split_of(row.get("split"), where)
        self.samples.add(where, key, annotations, text=text, split=split)

    @staticmethod
    def labels(value, where: str) -> list:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [v.strip() for v in value.split(SEPARATOR) if v.strip()]
        if isinstance(value, list):
            return value
        raise FormatError(f"{where}: label must be a name or a list of names, not {value!r:.60}.")

    @staticmethod
    def spans(value, where: str) -> list:
        if isinstance(value, str):
            if not value.strip():
                return []
            try:
                value = json.loads(value)
            except ValueError as e:
                raise FormatError(f"{where}: entities is not JSON: {e}.") from None
        if value is None:
            return []
        if not isinstance(value, list):
            raise FormatError(f"{where}: entities must be a list of {{start, end, label}}.")
        out = []
        for item in value:
            if isinstance(item, dict):
                out.append(
                    {"label": item.get("label"), "span": [item.get("start"), item.get("end")]}
                )
            elif isinstance(item, list) and len(item) == 3:  # [start, end, label]
                out.append({"label": item[2], "span": item[:2]})
            else:
                raise FormatError(
                    f"{where}: an entity must be {{start, end, label}}, not {item!r:.60}."
                )
        return out


def write(
    samples: list[dict], labels: list, dataset_type: str, out: Path, source_of, *, fmt: str
) -> None:
    """dataset.csv or dataset.jsonl: one row a sample, its text inline."""
    export = Export(out, source_of)
    entities = dataset_type == NAMED_ENTITIES
    column = "entities" if entities else "label"
    with export.open(PurePosixPath(FILE_NAMES[fmt])) as f:
        rows = csv.writer(f) if fmt == "csv" else None
        if rows is not None:
            rows.writerow(["key", "text", column, "split"])
        for sample in samples:
            key = check_key(sample["key"]).as_posix()
            text = export.text(sample)
            annotations = sample.get("annotations") or ()
            if entities:
                value = [
                    {"start": a["span"][0], "end": a["span"][1], "label": a["label"]}
                    for a in annotations
                ]
            else:
                value = [a["label"] for a in annotations]
            split = split_name(sample)
            if rows is not None:
                if entities:
                    cell = json.dumps(value, ensure_ascii=False) if value else ""
                else:
                    cell = SEPARATOR.join(value)
                rows.writerow([key, text, cell, split])
            else:
                if not entities:
                    value = value[0] if len(value) == 1 else value or None
                line = {"key": key, "text": text, column: value, "split": split}
                f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
                f.write("\n")
