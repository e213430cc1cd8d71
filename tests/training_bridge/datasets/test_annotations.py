"""The annotation model: label sets get colours and keys and stay unique; annotations are
checked against their dataset's type, labels, image size or text, and come out in one shape."""

from __future__ import annotations

from datetime import datetime

import pytest

from training_bridge.datasets.annotations import (
    PALETTE,
    AnnotationError,
    check_annotations,
    check_labels,
    label_names,
)

NOW = datetime(2026, 12, 2, 10, 0, 0)
LABELS = [{"name": "cat", "color": "#e6194b", "key": "c"}, {"name": "dog"}]


def test_labels_get_free_colours_and_keys_in_order():
    labels = check_labels(
        ["cat", {"name": "dog", "key": "1", "color": "#E6194B"}, {"name": "Grüne Äpfel"}]
    )
    assert labels == [
        {"name": "cat", "color": PALETTE[1], "key": "2"},
        {"name": "dog", "color": "#e6194b", "key": "1"},
        {"name": "Grüne Äpfel", "color": PALETTE[2], "key": "3"},
    ]
    many = check_labels([f"l{n}" for n in range(40)])
    assert [label["key"] for label in many[:11]] == [*"123456789ab"]
    assert many[34]["key"] == "z" and many[35]["key"] == ""  # no shortcut left
    assert len({label["color"] for label in many}) == len(PALETTE)  # colours cycle
    assert check_labels([{"name": "x", "key": "Q"}])[0]["key"] == "q"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["cat", "cat"], "Label 'cat' is given twice"),
        (["a/b"], "holds '/' or a control character"),
        (["tab\there"], "holds '/' or a control character"),
        ([""], "A label needs a name"),
        ([" cat"], "starts or ends with spaces"),
        (["x" * 65], "longer than 64 characters"),
        ([{"name": "cat", "color": "red"}], "Colour 'red' of label 'cat' is not of the form"),
        ([{"name": "cat", "key": "ab"}], "Key 'ab' of label 'cat' must be one letter"),
        ([{"name": "a", "key": "x"}, {"name": "b", "key": "x"}], "Key 'x' is given to two"),
        ([{"name": "cat", "colour": "#ffffff"}], "Unknown field 'colour' in label 'cat'"),
        ("cat", "must be a list"),
    ],
)
def test_bad_label_sets_are_refused(labels, message):
    with pytest.raises(AnnotationError, match=message.replace("(", r"\(")):
        check_labels(labels)


def test_boxes_are_rounded_and_authors_and_times_filled():
    given = [
        {"label": "cat", "box": [1, 2.3456, 10.0, 20.004], "id": "client-side"},
        {
            "label": "dog",
            "box": [0, 0, 640, 480],
            "annotated_by": "model:alice/detector",
            "confidence": 0.93,
            "created": "2026-11-30T08:00:00+00:00",
        },
    ]
    out = check_annotations(
        "object_detection",
        LABELS,
        given,
        width=640,
        height=480,
        annotated_by="alice",
        now=NOW,
    )
    assert out == [
        {
            "label": "cat",
            "box": [1, 2.35, 10, 20],
            "annotated_by": "alice",
            "confidence": None,
            "created": "2026-12-02T10:00:00Z",
        },
        {
            "label": "dog",
            "box": [0, 0, 640, 480],
            "annotated_by": "model:alice/detector",
            "confidence": 0.93,
            "created": "2026-11-30T08:00:00Z",
        },
    ]
    # what came out goes back in unchanged
    assert check_annotations("object_detection", LABELS, out, width=640, height=480) == out


@pytest.mark.parametrize(
    ("box", "message"),
    [
        ([600, 10, 700, 50], "Box [600, 10, 700, 50] of label 'cat' is outside the 640x480 image."),
        ([-3, 10, 20, 50], "Box [-3, 10, 20, 50] of label 'cat' is outside the 640x480 image."),
        ([10, 10, 20, 480.5], "is outside the 640x480 image."),
        ([20, 10, 20, 50], "Box [20, 10, 20, 50] of label 'cat' is empty"),
        ([30, 10, 20, 50], "x_min must be below x_max"),
        ([1, 2, 3], "needs a box [x_min, y_min, x_max, y_max] of four numbers"),
        ([1, 2, 3, True], "of four numbers"),
        (None, "needs a box"),
        ([1, 2, float("nan"), 4], "of four numbers"),
    ],
)
def test_bad_boxes_name_the_box_the_label_and_the_sample(box, message):
    with pytest.raises(AnnotationError) as caught:
        check_annotations(
            "object_detection",
            LABELS,
            [{"label": "cat", "box": box}],
            width=640,
            height=480,
            key="images/cat-1.jpg",
        )
    assert str(caught.value).startswith("Sample images/cat-1.jpg: ")
    assert message in str(caught.value)


def test_boxes_of_images_of_unknown_size_are_checked_for_order_only():
    out = check_annotations("object_detection", LABELS, [{"label": "cat", "box": [5, 5, 9000, 7]}])
    assert out[0]["box"] == [5, 5, 9000, 7]
    with pytest.raises(AnnotationError, match="is outside the image"):
        check_annotations("object_detection", LABELS, [{"label": "cat", "box": [-1, 5, 9, 7]}])


def test_labels_must_be_in_the_set():
    with pytest.raises(AnnotationError) as caught:
        check_annotations("image_classification", LABELS, [{"label": "cow"}], key="a.jpg")
    assert str(caught.value) == (
        "Sample a.jpg: Label 'cow' is not in the dataset's labels ('cat', 'dog'): add it first."
    )
    with pytest.raises(AnnotationError, match="which has none yet"):
        check_annotations("image_classification", [], [{"label": "cow"}])
    with pytest.raises(AnnotationError, match="An annotation has no label"):
        check_annotations("image_classification", LABELS, [{"name": "cat"}])
    with pytest.raises(AnnotationError, match="Annotation 1 is not an object"):
        check_annotations("image_classification", LABELS, ["cat"])
    with pytest.raises(AnnotationError, match="must be a list"):
        check_annotations("image_classification", LABELS, {"label": "cat"})


def test_classification_takes_one_label_unless_multi_label():
    one = check_annotations("text_classification", {"cat", "dog"}, [{"label": "cat"}], now=NOW)
    assert one == [
        {"label": "cat", "annotated_by": "", "confidence": None, "created": "2026-12-02T10:00:00Z"}
    ]
    both = [{"label": "cat"}, {"label": "dog"}]
    with pytest.raises(AnnotationError, match=r"2 labels are given, but .* \(multi_label is off\)"):
        check_annotations("image_classification", LABELS, both)
    assert label_names(check_annotations("image_classification", LABELS, both, multi_label=True))
    with pytest.raises(AnnotationError, match="Label 'cat' is given twice"):
        check_annotations("image_classification", LABELS, [both[0], both[0]], multi_label=True)
    with pytest.raises(AnnotationError, match="boxes belong to object_detection datasets"):
        check_annotations("image_classification", LABELS, [{"label": "cat", "box": [0, 0, 1, 1]}])
    assert check_annotations("image_classification", LABELS, []) == []
    assert check_annotations("image_classification", LABELS, None) == []


def test_spans_stay_inside_the_text():
    text = "Zoë went to Zürich."
    out = check_annotations(
        "named_entities",
        ["person", "place"],
        [{"label": "person", "span": [0, 3]}, {"label": "place", "span": (12, 18)}],
        text=text,
    )
    assert [text[slice(*a["span"])] for a in out] == ["Zoë", "Zürich"]
    for span, message in [
        ([12, 30], "Span [12, 30] of label 'place' is outside the text (19 characters)."),
        ([5, 5], "Span [5, 5] of label 'place' is empty"),
        ([-1, 5], "is empty"),
        ([1.0, 5], "needs a span [start, end] of two character offsets"),
        (None, "needs a span"),
    ]:
        with pytest.raises(AnnotationError) as caught:
            check_annotations(
                "named_entities", ["place"], [{"label": "place", "span": span}], text=text
            )
        assert message in str(caught.value)
    with pytest.raises(AnnotationError, match="spans belong to named_entities datasets"):
        check_annotations("text_classification", ["place"], [{"label": "place", "span": [0, 1]}])


@pytest.mark.parametrize("confidence", [1.5, -0.1, True, "high"])
def test_confidence_is_between_0_and_1(confidence):
    with pytest.raises(AnnotationError, match="must be between 0 and 1"):
        check_annotations(
            "image_classification", LABELS, [{"label": "cat", "confidence": confidence}]
        )
    assert check_annotations("image_classification", LABELS, [{"label": "cat", "confidence": 1}])[
        0
    ]["confidence"] == pytest.approx(1.0)


def test_bad_times_types_and_authors_are_refused():
    with pytest.raises(AnnotationError, match="created 'yesterday' of label 'cat' is not an ISO"):
        check_annotations(
            "image_classification", LABELS, [{"label": "cat", "created": "yesterday"}]
        )
    with pytest.raises(AnnotationError, match="annotated_by of label 'cat'"):
        check_annotations("image_classification", LABELS, [{"label": "cat", "annotated_by": 3}])
    with pytest.raises(AnnotationError, match="Unknown dataset type 'audio'"):
        check_annotations("audio", LABELS, [])


def test_label_names_are_distinct_in_order():
    annotations = [{"label": "dog"}, {"label": "cat"}, {"label": "dog"}]
    assert label_names(annotations) == ["dog", "cat"]
    assert label_names([]) == []
