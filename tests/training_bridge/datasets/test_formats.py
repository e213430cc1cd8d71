"""Import and export formats: every format writes a dataset of each type it holds and reads it
back the same (keys, labels, boxes within rounding, spans, splits); the layouts other tools
make are read; what is broken or points outside the folder is refused with the file and line."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from PIL import Image
from pycocotools.coco import COCO

from training_bridge.datasets.annotations import check_annotations
from training_bridge.datasets.formats import FORMATS, FormatError, formats_for, read, write

NOW = datetime(2026, 12, 2, 10, 0, 0)
LABELS = [
    {"name": "cat", "color": "#e6194b", "key": "c"},
    {"name": "dog", "color": "#3cb44b", "key": "d"},
    {"name": "bird", "color": "#ffe119", "key": "b"},
    {"name": "fish", "color": "#4363d8", "key": "f"},  # in no annotation
]
MODEL = {"annotated_by": "model:alice/detector", "confidence": 0.87}


def make_image(path: Path, width: int, height: int, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 30, 200)).save(path, fmt)
    return path


def sample(dataset_type, key, annotations, *, split="", width=0, height=0, text=None, multi=False):
    """A sample as the dataset service holds it: annotations already in the model's shape."""
    return {
        "key": key,
        "text": text,
        "width": width,
        "height": height,
        "annotations": check_annotations(
            dataset_type,
            LABELS,
            annotations,
            width=width,
            height=height,
            text=text,
            multi_label=multi,
            annotated_by="alice",
            now=NOW,
        ),
        "split": split,
    }


def detection_samples():
    od = "object_detection"
    return [
        sample(
            od,
            "images/cat-1.jpg",
            [
                {"label": "cat", "box": [10, 20.5, 200, 300]},
                {"label": "dog", "box": [300.25, 100, 639, 479.5], **MODEL},
            ],
            split="train",
            width=640,
            height=480,
        ),
        sample(
            od,
            "images/sub/dog-2.png",
            [{"label": "dog", "box": [0, 0, 320, 240]}],
            split="validation",
            width=320,
            height=240,
        ),
        sample(
            od,
            "photos/bird.jpg",
            [{"label": "bird", "box": [20, 10, 180.33, 90]}],
            width=200,
            height=100,
        ),
        sample(od, "photos/empty.jpg", [], width=100, height=80),
    ]


def image_classification_samples():
    ic = "image_classification"
    return [
        sample(ic, "images/a.jpg", [{"label": "cat"}], split="train", width=64, height=48),
        sample(
            ic, "images/b.png", [{"label": "dog", **MODEL}], split="validation", width=32, height=32
        ),
        sample(ic, "c.jpg", [], width=20, height=10),
        sample(
            ic, "more/d.jpg", [{"label": "cat"}, {"label": "bird"}], width=20, height=10, multi=True
        ),
    ]


def text_classification_samples():
    tc = "text_classification"
    return [
        sample(tc, "texts/1.txt", [{"label": "cat"}], split="train", text="Purrs all day."),
        sample(
            tc,
            "texts/2.txt",
            [{"label": "dog", **MODEL}],
            split="validation",
            text="Barks, café ☕",
        ),
        sample(tc, "texts/3.txt", [], text='Line one,\n"quoted" line two'),
        sample(tc, "texts/4.txt", [{"label": "cat"}, {"label": "dog"}], text="Both.", multi=True),
    ]


def named_entities_samples():
    ne = "named_entities"
    text = "Michael Jordan met Zoë in Zürich."
    return [
        sample(
            ne,
            "texts/mj.txt",
            [
                {"label": "cat", "span": [0, 14]},
                {"label": "dog", "span": [19, 22], **MODEL},
                {"label": "bird", "span": [26, 32]},
            ],
            split="train",
            text=text,
        ),
        sample(ne, "texts/none.txt", [], split="validation", text='Nothing here, "really".'),
    ]


SAMPLES = {
    "object_detection": detection_samples,
    "image_classification": image_classification_samples,
    "text_classification": text_classification_samples,
    "named_entities": named_entities_samples,
}
CASES = [(fmt, t) for fmt, spec in FORMATS.items() for t in spec.types]


def sources(tmp_path: Path, samples: list[dict]):
    """The samples' files (images made with Pillow; texts left to their text) and source_of."""
    root = tmp_path / "blobs"
    for s in samples:
        if s["text"] is None:
            make_image(root / s["key"], s["width"], s["height"])
    return lambda s: root / s["key"] if s["text"] is None else None


def same(read_samples: list[dict], written: list[dict], dataset_type: str, fmt: str):
    """Read samples equal the written ones: keys, splits, texts, sizes and annotations."""
    assert sorted(s["key"] for s in read_samples) == sorted(s["key"] for s in written)
    by_key = {s["key"]: s for s in read_samples}
    for want in written:
        got = by_key[want["key"]]
        assert got["split"] == want["split"], want["key"]
        assert got["text"] == want["text"]
        if dataset_type == "object_detection":
            assert (got["width"], got["height"]) == (want["width"], want["height"])
        assert len(got["annotations"]) == len(want["annotations"]), want["key"]
        for g, w in zip(got["annotations"], want["annotations"], strict=True):
            assert g["label"] == w["label"]
            if "box" in w:
                assert g["box"] == pytest.approx(w["box"], abs=0.011)
            if "span" in w:
                assert g["span"] == w["span"]
                assert got["text"][slice(*g["span"])] == want["text"][slice(*w["span"])]
            if fmt == "modelarts":  # the manifest keeps who made a label, how sure, and when
                assert g["confidence"] == w["confidence"]
                assert g["created"] == w["created"]
                if w["annotated_by"].startswith("model:"):
                    assert g["annotated_by"] == w["annotated_by"]


@pytest.mark.parametrize(("fmt", "dataset_type"), CASES)
def test_an_export_reads_back_the_same(tmp_path, fmt, dataset_type):
    samples = SAMPLES[dataset_type]()
    out = tmp_path / "export"
    write(fmt, samples, LABELS, dataset_type, out, sources(tmp_path, samples))
    for s in samples:  # the files themselves are in the export, at their keys
        if s["text"] is None:
            assert (out / s["key"]).read_bytes() == (tmp_path / "blobs" / s["key"]).read_bytes()
    imported = read(fmt, out, dataset_type)
    same(imported.samples, samples, dataset_type, fmt)
    used = {a["label"] for s in samples for a in s["annotations"]}
    if fmt in ("modelarts", "coco", "yolo"):  # these keep the whole label set, in order
        assert imported.labels == ["cat", "dog", "bird", "fish"]
    else:
        assert set(imported.labels) == used


def test_a_coco_export_loads_in_the_coco_api(tmp_path):
    samples = detection_samples()
    out = tmp_path / "coco"
    write("coco", samples, LABELS, "object_detection", out, sources(tmp_path, samples))
    files = sorted(p.name for p in (out / "annotations").iterdir())
    assert files == ["instances_default.json", "instances_train.json", "instances_validation.json"]
    train = COCO(str(out / "annotations" / "instances_train.json"))
    assert len(train.getImgIds()) == 1 and len(train.getAnnIds()) == 2
    assert [c["name"] for c in train.loadCats(train.getCatIds())] == ["cat", "dog", "bird", "fish"]
    image = train.loadImgs(train.getImgIds())[0]
    assert (image["file_name"], image["width"], image["height"]) == ("images/cat-1.jpg", 640, 480)
    cat, dog = train.loadAnns(train.getAnnIds(imgIds=[image["id"]]))
    assert cat["bbox"] == [10, 20.5, 190, 279.5] and cat["area"] == pytest.approx(190 * 279.5)
    assert dog["bbox"] == pytest.approx([300.25, 100, 338.75, 379.5])
    assert dog["score"] == pytest.approx(0.87)
    assert train.loadCats(cat["category_id"])[0]["name"] == "cat"
    default = COCO(str(out / "annotations" / "instances_default.json"))
    assert len(default.getImgIds()) == 2 and len(default.getAnnIds()) == 1
    assert (out / image["file_name"]).is_file()


def test_a_coco_export_of_100000_boxes_is_one_json_per_split(tmp_path):
    source = make_image(tmp_path / "one.jpg", 640, 480)
    samples = [
        {
            "key": f"images/{n:05d}.jpg",
            "text": None,
            "width": 640,
            "height": 480,
            "split": "train" if n % 5 else "validation",
            "annotations": [
                {
                    "label": LABELS[b % 3]["name"],
                    "box": [b, b + 0.5, b + 100, b + 50.25],
                    "annotated_by": "alice",
                    "confidence": None,
                    "created": "2026-12-02T10:00:00Z",
                }
                for b in range(100)
            ],
        }
        for n in range(1000)
    ]
    out = tmp_path / "coco"
    write("coco", samples, LABELS, "object_detection", out, lambda s: source)
    written = sorted(p.name for p in out.rglob("*") if p.is_file() and p.suffix == ".json")
    assert written == ["instances_train.json", "instances_validation.json"]
    train = COCO(str(out / "annotations" / "instances_train.json"))
    assert len(train.getImgIds()) == 800 and len(train.getAnnIds()) == 80_000
    assert train.loadAnns(train.getAnnIds()[:1])[0]["bbox"] == [0, 0.5, 100, 49.75]
    imported = read("coco", out, "object_detection")
    assert sum(len(s["annotations"]) for s in imported.samples) == 100_000


def test_a_published_version_keeps_its_files_under_data(tmp_path):
    samples = detection_samples()
    source_of = sources(tmp_path, samples)
    out = tmp_path / "version"
    write("modelarts", samples, LABELS, "object_detection", out, source_of, files_under="data")
    lines = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [line["source"] for line in lines] == [f"data/{s['key']}" for s in samples]
    first = lines[0]
    assert (first["usage"], first["split"], first["width"], first["height"]) == (
        "TRAIN",
        "train",
        640,
        480,
    )
    assert lines[1]["usage"] == "EVAL" and "usage" not in lines[2] and lines[2]["split"] == ""
    assert first["annotation"][0] == {
        "type": "modelarts/object_detection",
        "name": "cat",
        "property": {"@modelarts:shape": "bndbox", "@modelarts:feature": [[10, 20.5], [200, 300]]},
        "annotated-by": "human",
        "creation-time": "2026-12-02 10:00:00",
    }
    assert first["annotation"][1]["annotated-by"] == "alice/detector"
    assert first["annotation"][1]["confidence"] == pytest.approx(0.87)
    assert json.loads((out / "labels.json").read_text()) == LABELS
    key = samples[0]["key"]
    assert os.stat(out / "data" / key).st_ino == os.stat(source_of(samples[0])).st_ino  # a link


def test_text_manifests_and_csv_hold_their_texts_inline_or_in_files(tmp_path):
    samples = named_entities_samples()
    blobs = tmp_path / "texts"
    blobs.mkdir()
    (blobs / "mj.txt").write_text(samples[0]["text"], encoding="utf-8")
    kept = dict(samples[0], text=None)  # the service may give the text as a file only
    source_of = lambda s: blobs / "mj.txt" if s["key"] == "texts/mj.txt" else None  # noqa: E731
    write("modelarts", [kept, samples[1]], LABELS, "named_entities", tmp_path / "m", source_of)
    assert (tmp_path / "m" / "texts" / "none.txt").read_text() == samples[1]["text"]
    line = json.loads((tmp_path / "m" / "manifest.jsonl").read_text().splitlines()[0])
    assert line["annotation"][0]["type"] == "modelarts/text_entity"
    assert line["annotation"][0]["property"] == {
        "@modelarts:start_index": 0,
        "@modelarts:end_index": 14,
    }
    same(read("modelarts", tmp_path / "m", "named_entities").samples, samples, "named_entities", "")
    write("csv", [kept, samples[1]], LABELS, "named_entities", tmp_path / "c", source_of)
    assert not (tmp_path / "c" / "texts").exists()  # the texts are in the CSV
    same(read("csv", tmp_path / "c", "named_entities").samples, samples, "named_entities", "")


# --- the layouts other tools make ------------------------------------------------------------


def test_a_modelarts_manifest_with_urls_voc_files_and_usage(tmp_path):
    make_image(tmp_path / "images" / "a.jpg", 400, 300)
    make_image(tmp_path / "images" / "b.jpg", 400, 300)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "b.xml").write_text(
        "<annotation><filename>b.jpg</filename><size><width>400</width><height>300</height>"
        "</size><object><name>dog</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>300</xmax>"
        "<ymax>299</ymax></bndbox></object></annotation>"
    )
    lines = [
        {
            "source": "s3://bucket/project/images/a.jpg",
            "usage": "TRAIN",
            "annotation": [
                {
                    "type": "modelarts/object_detection",
                    "name": "cat",
                    "property": {
                        "@modelarts:shape": "bndbox",
                        "@modelarts:feature": [[5, 6], [100.456, 200]],
                    },
                    "annotated-by": "modelarts/auto-label",
                    "creation-time": "2019-02-20 08:23:06",
                    "confidence": 0.8,
                }
            ],
        },
        {
            "source": "obs://bucket/project/images/b.jpg",
            "usage": "EVAL",
            "annotation": [
                {
                    "type": "modelarts/object_detection",
                    "annotation-loc": "s3://bucket/project/Annotations/b.xml",
                    "annotation-format": "PASCAL VOC",
                    "annotated-by": "human",
                }
            ],
        },
    ]
    (tmp_path / "dataset.manifest").write_text("".join(json.dumps(x) + "\n" for x in lines))
    imported = read("modelarts", tmp_path, "object_detection")
    assert imported.labels == ["cat", "dog"]
    a, b = imported.samples
    assert (a["key"], a["split"], a["width"], a["height"]) == ("images/a.jpg", "train", 400, 300)
    assert a["annotations"] == [
        {
            "label": "cat",
            "box": [5, 6, 100.46, 200],
            "annotated_by": "model:modelarts/auto-label",
            "confidence": 0.8,
            "created": "2019-02-20T08:23:06Z",
        }
    ]
    assert (b["key"], b["split"]) == ("images/b.jpg", "validation")
    assert [(x["label"], x["box"], x["annotated_by"]) for x in b["annotations"]] == [
        ("dog", [1, 2, 300, 299], "")  # a person's: the importer becomes its author
    ]


def test_a_modelarts_text_manifest_with_inline_content(tmp_path):
    text = "Michael Jordan is the most famous basketball player in the world."
    line = {
        "source": "content://" + text,
        "annotation": [
            {
                "type": "modelarts/text_entity",
                "name": "Person",
                "property": {"@modelarts:start_index": 0, "@modelarts:end_index": 14},
            },
            {
                "type": "modelarts/text_entity",
                "name": "Category",
                "property": {"@modelarts:start_index": 34, "@modelarts:end_index": 44},
            },
        ],
    }
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n\n")
    imported = read("modelarts", tmp_path, "named_entities")
    (s,) = imported.samples
    assert (s["key"], s["text"]) == ("texts/000001.txt", text)
    assert [text[slice(*a["span"])] for a in s["annotations"]] == ["Michael Jordan", "basketball"]
    assert imported.labels == ["Person", "Category"]


def test_a_pascal_voc_folder(tmp_path):
    make_image(tmp_path / "VOC2007" / "JPEGImages" / "000001.jpg", 500, 375)
    make_image(tmp_path / "VOC2007" / "JPEGImages" / "000002.jpg", 500, 375)
    annotations = tmp_path / "VOC2007" / "Annotations"
    annotations.mkdir()
    for n, (name, box) in enumerate(
        [("dog", (48, 240, 195, 371)), ("person", (8, 12, 352, 375))], 1
    ):
        (annotations / f"00000{n}.xml").write_text(
            f"<annotation><folder>VOC2007</folder><filename>00000{n}.jpg</filename>"
            "<size><width>500</width><height>375</height><depth>3</depth></size>"
            f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{box[0]}</xmin>"
            f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}.0</ymax></bndbox></object>"
            "</annotation>"
        )
    sets = tmp_path / "VOC2007" / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("000001\n")
    (sets / "val.txt").write_text("000002\n")
    (sets / "dog_train.txt").write_text("000002  1\n")  # per-class lists are not splits
    imported = read("voc", tmp_path, "object_detection")
    assert imported.labels == ["dog", "person"]
    assert [(s["key"], s["split"], s["annotations"][0]["box"]) for s in imported.samples] == [
        ("VOC2007/JPEGImages/000001.jpg", "train", [48, 240, 195, 371]),
        ("VOC2007/JPEGImages/000002.jpg", "validation", [8, 12, 352, 375]),
    ]


def test_an_ultralytics_yolo_folder(tmp_path):
    make_image(tmp_path / "images" / "train" / "a.jpg", 640, 480)
    make_image(tmp_path / "images" / "val" / "b.png", 100, 50)
    make_image(tmp_path / "images" / "val" / "background.png", 100, 50)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text(
        "1 0.5 0.5 0.25 0.5\n\n0 0.1 0.1 0.2 0.2\n"
    )
    # a segment: its bounding box; a prediction with a confidence
    (tmp_path / "labels" / "val" / "b.txt").write_text(
        "0 0.1 0.2 0.5 0.2 0.3 0.9\n1 0.5 0.5 1 1 0.75\n"
    )
    (tmp_path / "data.yaml").write_text(
        "path: /home/someone/datasets/pets  # where it was made\n"
        "train: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n"
    )
    imported = read("yolo", tmp_path, "object_detection")
    assert imported.labels == ["cat", "dog"]
    by_key = {s["key"]: s for s in imported.samples}
    a = by_key["images/train/a.jpg"]
    assert a["split"] == "train" and (a["width"], a["height"]) == (640, 480)
    assert [(x["label"], x["box"]) for x in a["annotations"]] == [
        ("dog", [240, 120, 400, 360]),
        ("cat", [0, 0, 128, 96]),
    ]
    b = by_key["images/val/b.png"]
    assert [(x["label"], x["box"], x["confidence"]) for x in b["annotations"]] == [
        ("cat", [10, 10, 50, 45], None),
        ("dog", [0, 0, 100, 50], 0.75),
    ]
    assert by_key["images/val/background.png"]["annotations"] == []
    assert by_key["images/val/background.png"]["split"] == "validation"


def test_a_darknet_folder_with_classes_txt(tmp_path):
    make_image(tmp_path / "obj" / "x.jpg", 200, 100)
    (tmp_path / "obj" / "x.txt").write_text("2 0.5 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\nbird\n")
    (s,) = read("yolo", tmp_path, "object_detection").samples
    assert (s["key"], s["annotations"][0]["label"], s["annotations"][0]["box"]) == (
        "obj/x.jpg",
        "bird",
        [50, 25, 150, 75],
    )


def test_coco_with_an_images_folder_and_own_category_ids(tmp_path):
    make_image(tmp_path / "images" / "train2017" / "000000000009.jpg", 640, 480)
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_train2017.json").write_text(
        json.dumps(
            {
                "images": [{"id": 9, "file_name": "000000000009.jpg", "width": 640, "height": 480}],
                "annotations": [
                    {
                        "id": 1,
                        "image_id": 9,
                        "category_id": 51,
                        "bbox": [1.08, 187.69, 611.59, 285.84],
                    },
                    {
                        "id": 2,
                        "image_id": 9,
                        "category_id": 56,
                        "bbox": [249.6, 229.27, 316.24, 245.08],
                    },
                ],
                "categories": [{"id": 51, "name": "bowl"}, {"id": 56, "name": "broccoli"}],
            }
        )
    )
    imported = read("coco", tmp_path, "object_detection")
    (s,) = imported.samples
    assert (s["key"], s["split"]) == ("images/train2017/000000000009.jpg", "train")
    assert [(a["label"], a["box"]) for a in s["annotations"]] == [
        ("bowl", [1.08, 187.69, 612.67, 473.53]),
        ("broccoli", [249.6, 229.27, 565.84, 474.35]),
    ]


def test_csv_from_a_spreadsheet_and_jsonl_with_entity_triples(tmp_path):
    (tmp_path / "reviews.csv").write_text(
        '\ufeffText,Label\nGreat phone,pos\n"Bad, broken",neg|spam\nNo label yet,\n',
        encoding="utf-8",
    )
    imported = read("csv", tmp_path, "text_classification")
    assert [
        (s["key"], s["text"], [a["label"] for a in s["annotations"]]) for s in imported.samples
    ] == [
        ("texts/000001.txt", "Great phone", ["pos"]),
        ("texts/000002.txt", "Bad, broken", ["neg", "spam"]),
        ("texts/000003.txt", "No label yet", []),
    ]
    assert imported.labels == ["pos", "neg", "spam"]
    (tmp_path / "ner.jsonl").write_text(
        json.dumps(
            {"text": "Ada in Paris", "entities": [[0, 3, "PER"], [7, 12, "LOC"]], "split": "val"}
        )
        + "\n"
    )
    (s,) = read("jsonl", tmp_path, "named_entities").samples
    assert s["split"] == "validation"
    assert [(a["label"], a["span"]) for a in s["annotations"]] == [
        ("PER", [0, 3]),
        ("LOC", [7, 12]),
    ]


# --- bad input -------------------------------------------------------------------------------


def refused(fmt: str, folder: Path, dataset_type: str = "object_detection") -> str:
    with pytest.raises(FormatError) as caught:
        read(fmt, folder, dataset_type)
    return str(caught.value)


def coco(folder: Path, file_name: str, bbox=(10, 10, 20, 20), category=1) -> None:
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    (folder / "annotations" / "instances_default.json").write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": file_name, "width": 640, "height": 480}],
                "annotations": [
                    {"id": 7, "image_id": 1, "category_id": category, "bbox": list(bbox)}
                ],
                "categories": [{"id": 1, "name": "cat"}],
            }
        )
    )


def test_a_manifest_line_that_is_not_json_is_named(tmp_path):
    make_image(tmp_path / "a.jpg", 10, 10)
    (tmp_path / "manifest.jsonl").write_text('{"source": "a.jpg"}\n{"source": "b.jpg",\n')
    message = refused("modelarts", tmp_path, "image_classification")
    assert message.startswith("manifest.jsonl line 2 is not JSON: ")


def test_coco_that_does_not_parse_is_named(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "instances_default.json").write_text('{"images": [')
    assert refused("coco", tmp_path).startswith(
        "annotations/instances_default.json does not parse as JSON"
    )
    (tmp_path / "annotations" / "instances_default.json").write_text('{"info": {}}')
    assert refused("coco", tmp_path).startswith("No COCO annotation file")


@pytest.mark.parametrize("path", ["../x.jpg", "/etc/passwd", "images/../../x.jpg", "C:\\x.jpg"])
@pytest.mark.parametrize("fmt", ["coco", "voc", "modelarts"])
def test_paths_that_leave_the_folder_are_refused(tmp_path, fmt, path):
    folder = tmp_path / "data"
    make_image(tmp_path / "x.jpg", 10, 10)  # there, but outside the folder
    make_image(folder / "images" / "a.jpg", 10, 10)
    if fmt == "coco":
        coco(folder, path)
    elif fmt == "voc":
        (folder / "images" / "a.xml").write_text(
            f"<annotation><filename>{path}</filename></annotation>"
        )
    else:
        (folder / "manifest.jsonl").write_text(json.dumps({"source": path}) + "\n")
    message = refused(fmt, folder)
    assert "leaves the dataset folder" in message
    assert repr(path) in message


def test_links_that_leave_the_folder_are_refused(tmp_path):
    make_image(tmp_path / "secret.jpg", 10, 10)
    folder = tmp_path / "data"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.jpg").symlink_to(tmp_path / "secret.jpg")
    (folder / "manifest.jsonl").write_text(json.dumps({"source": "images/a.jpg"}) + "\n")
    assert "images/a.jpg links outside the dataset folder" in refused("modelarts", folder)
    (folder / "manifest.jsonl").unlink()
    (folder / "classes.txt").write_text("cat\n")
    assert refused("yolo", folder) == "images/a.jpg links outside the dataset folder."


def test_a_yolo_class_beyond_the_names_is_refused(tmp_path):
    make_image(tmp_path / "images" / "a.jpg", 10, 10)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text("names: [cat, dog]\n")
    assert refused("yolo", tmp_path) == (
        "labels/a.txt line 2: class 3 is beyond the 2 names of data.yaml (0 to 1)."
    )
    (tmp_path / "data.yaml").unlink()
    assert refused("yolo", tmp_path).startswith("No class names")


def test_a_csv_without_a_text_column_is_refused(tmp_path):
    (tmp_path / "data.csv").write_text("sentence,label\nhello,greeting\n")
    message = refused("csv", tmp_path, "text_classification")
    assert message.startswith("data.csv has no 'text' column")
    (tmp_path / "data.csv").write_text("text,label\nhello,greeting\n,empty\n")
    assert refused("csv", tmp_path, "text_classification") == "data.csv line 3 has no text."


def test_boxes_outside_the_image_are_refused_and_slips_of_a_pixel_fitted(tmp_path):
    make_image(tmp_path / "a.jpg", 640, 480)
    coco(tmp_path, "a.jpg", bbox=(600, 10, 100, 40))
    assert refused("coco", tmp_path) == (
        "annotations/instances_default.json: image 1 (a.jpg): "
        "Box [600, 10, 700, 50] of label 'cat' is outside the 640x480 image."
    )
    coco(tmp_path, "a.jpg", bbox=(600, -0.4, 40.5, 40))  # other tools' rounding
    (s,) = read("coco", tmp_path, "object_detection").samples
    assert s["annotations"][0]["box"] == [600, 0, 640, 39.6]


def test_labels_not_in_the_set_are_refused(tmp_path):
    make_image(tmp_path / "a.jpg", 640, 480)
    coco(tmp_path, "a.jpg", category=5)
    assert refused("coco", tmp_path) == (
        "annotations/instances_default.json: annotation 7 has category 5, "
        "which is not in categories."
    )
    folder = tmp_path / "manifest"
    make_image(folder / "a.jpg", 10, 10)
    (folder / "labels.json").write_text(json.dumps([{"name": "cat"}]))
    line = {
        "source": "a.jpg",
        "annotation": [{"type": "modelarts/image_classification", "name": "unicorn"}],
    }
    (folder / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    message = refused("modelarts", folder, "image_classification")
    assert message == (
        "manifest.jsonl line 1: Label 'unicorn' is not in the dataset's labels ('cat'): "
        "add it first."
    )
    with pytest.raises(FormatError, match="label 'unicorn' is not in the labels"):
        write(
            "yolo",
            [
                {
                    "key": "a.jpg",
                    "width": 10,
                    "height": 10,
                    "annotations": [{"label": "unicorn", "box": [0, 0, 1, 1]}],
                }
            ],
            LABELS,
            "object_detection",
            tmp_path / "out",
            lambda s: folder / "a.jpg",
        )


def test_a_manifest_of_another_type_and_formats_of_other_types_are_refused(tmp_path):
    make_image(tmp_path / "a.jpg", 10, 10)
    line = {
        "source": "a.jpg",
        "annotation": [{"type": "modelarts/image_classification", "name": "x"}],
    }
    (tmp_path / "manifest.jsonl").write_text(json.dumps(line) + "\n")
    assert refused("modelarts", tmp_path).startswith(
        "manifest.jsonl line 1: annotation type 'modelarts/image_classification' does not fit "
        "a object_detection dataset"
    )
    assert refused("coco", tmp_path, "text_classification") == (
        "The coco format does not hold text_classification datasets: use one of "
        "modelarts, csv, jsonl."
    )
    assert refused("parquet", tmp_path).startswith("Unknown format 'parquet'")
    assert formats_for("image_classification") == ["modelarts"]
    assert "yolo" in formats_for("object_detection")


def test_a_sample_described_twice_is_refused(tmp_path):
    make_image(tmp_path / "a.jpg", 10, 10)
    lines = [{"source": "a.jpg"}, {"source": "./a.jpg"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert refused("modelarts", tmp_path, "image_classification") == (
        "manifest.jsonl line 2: a.jpg is already described by manifest.jsonl line 1."
    )
