"""parse_boxes / parse_labeled_boxes: the three answer forms, malformed input, adversarial input."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medmo_pipeline.schema.box_text import parse_boxes, parse_labeled_boxes
from medmo_pipeline.schema.boxes import format_box_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Fractures <box>[[156, 516, 231, 607], [240, 529, 296, 581]]</box>",
            [("Fractures", (156.0, 516.0, 231.0, 607.0)), ("Fractures", (240.0, 529.0, 296.0, 581.0))],
        ),
        (
            (
                "<think>two findings</think><answer>Effusion <box>[[1, 2, 30, 40]]</box>, "
                "Nodule <box>[[5.5, 6, 7, 8]]</box></answer>"
            ),
            [("Effusion", (1.0, 2.0, 30.0, 40.0)), ("Nodule", (5.5, 6.0, 7.0, 8.0))],
        ),
        (
            (
                '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "cell"},\n'
                ' {"label": "cell \\"b\\"", "bbox_2d": [50, 60, 70, 80]}]\n```'
            ),
            [("cell", (10.0, 20.0, 30.0, 40.0)), ('cell "b"', (50.0, 60.0, 70.0, 80.0))],
        ),
        ("[[1, 2, 3, 4], [5, 6, 7, 8]]", [("", (1.0, 2.0, 3.0, 4.0)), ("", (5.0, 6.0, 7.0, 8.0))]),
        ("The lesion is at [1, 2, 3, 4].", [("", (1.0, 2.0, 3.0, 4.0))]),
        ("[-1.5e1, 2., .5, 4]", [("", (-15.0, 2.0, 0.5, 4.0))]),
    ],
)
def test_accepted_forms(text, expected):
    assert parse_labeled_boxes(text) == expected
    assert parse_boxes(text) == [box for _, box in expected]


def test_box_groups_take_precedence_over_numbers_in_prose():
    text = "Earlier I guessed [0, 0, 9, 9]. Final: lesion <box>[[10, 10, 20, 20]]</box>"
    assert parse_boxes(text) == [(10.0, 10.0, 20.0, 20.0)]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "no boxes here",
        "[1, 2, 3]",  # wrong length
        "[1, 2, 3, 4, 5]",
        "[[1, 2, 3, 4, 5]]",
        '[1, "2", 3, 4]',  # non-numeric
        "[a, b, c, d]",
        "[1, 2, , 4]",
        "[5, 2, 3, 4]",  # x2 <= x1
        "[1, 5, 3, 4]",  # y2 <= y1
        "[1, 2, 1, 4]",  # zero width
        "[nan, 2, 3, 4]",
        "[1, 2, inf, 4]",
        "[1, 2, 1e999, 4]",  # overflows to inf
        "[1_0, 2, 30, 40]",  # Python-only literal
        '[{"bbox_2d": [10, 20], "label": "x"}]',
        "lesion <box>[[3, 4, 1, 2]]</box>",
        "lesion <box></box>",
    ],
)
def test_malformed_or_degenerate_entries_are_skipped(text):
    assert parse_boxes(text) == []


@pytest.mark.parametrize("value", [None, 42, b"[1, 2, 3, 4]", ["[1, 2, 3, 4]"]])
def test_non_string_input_gives_no_boxes(value):
    assert parse_boxes(value) == []


ADVERSARIAL = [
    "<box>" * 100_000,
    "</box>" * 100_000,
    "<box>[" * 50_000 + "</box>",
    "[" * 200_000,
    "]" * 200_000,
    "[" * 50_000 + "1, 2, 3, 4" + "]" * 50_000,
    "[1," * 100_000,
    "{" * 100_000 + "[1, 2, 3, 4]" + "}" * 100_000,
    '{"label": "' * 50_000 + "[1, 2, 3, 4]}",
    '{"label": "\\' * 50_000 + "[1, 2, 3, 4]}",
    "9" * 200_000 + ", 1, 2, 3",
    "[" + "9" * 5_000 + ", 1, 2, 3]",
    "[1, 2, 3, 4]" * 20_000,
    "\x00\xff\ud800[\x00, 1, 2, 3]" * 1_000,
    " " * 200_000 + "[1, 2",
    "<box>" + "[1, 2, 3, 4], " * 10_000 + "</box>",
    "```json\n" + "[{" * 10_000 + '"bbox_2d": [1, 2, 3, 4]' + "}]" * 10_000,
]


@pytest.mark.parametrize("text", ADVERSARIAL, ids=range(len(ADVERSARIAL)))
def test_adversarial_strings_parse_quickly(text):
    started = time.perf_counter()
    boxes = parse_labeled_boxes(text)
    assert isinstance(boxes, list)
    # Generous bound: quadratic behaviour on these inputs would take minutes, linear takes ms.
    assert time.perf_counter() - started < 5.0


# Texts assembled from the pieces the parser looks for, so random strings reach its branches.
PIECES = st.sampled_from(
    ["<box>", "</box>", "[", "]", "[[", "]]", ",", ", ", "{", "}", '"bbox_2d": ', '"label": ', '"', "\\",
     "1", "-2", "3.5", "1e3", "nan", "inf", "lesion", "\n", ":", " ", "```json", "<answer>", "\x00"]
)  # fmt: skip
piece_texts = st.lists(PIECES, max_size=60).map("".join)


@settings(max_examples=5_000, deadline=None)
@given(st.one_of(st.text(max_size=200), piece_texts))
def test_never_raises_on_random_text(text):
    for label, box in parse_labeled_boxes(text):
        assert isinstance(label, str)
        x1, y1, x2, y2 = box
        assert x2 > x1 and y2 > y1


@settings(max_examples=5_000, deadline=None)
@given(st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")))
def test_never_raises_on_binary_like_text(text):
    assert isinstance(parse_boxes(text), list)


relative_box = st.tuples(
    st.integers(0, 999), st.integers(0, 999), st.integers(1, 1000), st.integers(1, 1000)
).map(lambda b: (b[0], b[1], min(1000, b[0] + b[2]), min(1000, b[1] + b[3])))


@settings(max_examples=500, deadline=None)
@given(
    st.text(st.characters(exclude_characters="<>[]\n:;", exclude_categories=("Cs",)), max_size=20),
    st.lists(relative_box, min_size=1, max_size=8),
)
def test_round_trip_from_format_box_answer(label, boxes):
    text = format_box_answer(label, boxes)
    assert parse_boxes(text) == [tuple(float(v) for v in b) for b in boxes]
    assert {parsed_label for parsed_label, _ in parse_labeled_boxes(text)} <= {label.strip(" \t\r,.-*`'\"()")}
