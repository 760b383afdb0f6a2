"""YOLO label files and SLAKE box JSONs curated as the corpus job does, on the registry dataset's own
fixture: a box curation would refuse, or a line or item that is no box, costs that line or item
(named by its file and place), not the image's other boxes; a missing image is still named as its
record, beside the bad boxes it held."""

from __future__ import annotations

import json

import pytest
from registry_sources import registry_fixture


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    """(write the registry dataset's fixture and return its folder, curate it and return the report)."""
    return registry_fixture(tmp_path, monkeypatch)


def _kept(report: dict, suffix: str) -> dict:
    [row] = [row for row_id, row in report["kept_by_id"].items() if row_id.endswith(suffix)]
    return row


def _places(report: dict) -> list[tuple[str, str, str]]:
    """(reason, file, record) of each quarantined record, by file and place (single-digit places here)."""
    return sorted((problem[:3] for problem in report["problem_details"]), key=lambda p: (p[1], p[2]))


# ---- YOLO (GRAZPEDWRI-DX): each label line by itself ------------------------------------------

def test_yolo_a_bad_line_costs_that_line_only(fixture):
    build, curated = fixture
    path = build("grazpedwri_dx") / "labels" / "0001_0.txt"  # image 0001_0.png, 80 x 40
    fixture_lines = path.read_text().splitlines()  # two fracture boxes and a 'text' box (skipped)
    added = ["3 0.1 0.8 0.1 0.1",  # good: (4, 30, 12, 34)
             "3 5 5 0.1 0.1",  # far outside
             "3 0.5 0.5 0 0.1",  # no width
             "3 nan 0.5 0.1 0.1",
             "3 0.5 0.5",  # not 'class cx cy w h'
             "99 0.5 0.5 0.1 0.1",  # no class of meta.yaml
             "3 0.95 0.5 0.2 0.2",  # 12 of its 16 pixels wide inside: clipped, kept
             "8 0.5 0.5 0 0"]  # 'text' is skipped, whatever its box
    path.write_text("\n".join([*fixture_lines, *added]) + "\n")
    report = curated("grazpedwri_dx")
    first = len(fixture_lines) + 1
    file = "labels/0001_0.txt"
    assert _places(report) == [("box_outside", file, f"line {first + 1}"),
                               ("box_degenerate", file, f"line {first + 2}"),
                               ("box_nan", file, f"line {first + 3}"),
                               ("malformed_record", file, f"line {first + 4}"),
                               ("malformed_record", file, f"line {first + 5}")]
    details = {problem[2]: problem[3] for problem in report["problem_details"]}
    assert "is not 'class cx cy w h'" in details[f"line {first + 4}"]
    assert "class 99 is not one of the 9 classes" in details[f"line {first + 5}"]
    fracture = _kept(report, "0001_0:fracture")
    assert [b[k] for b in fracture["boxes"] for k in ("x1", "y1", "x2", "y2")] == pytest.approx(
        [30, 10, 50, 30, 12, 10, 20, 14, 4, 30, 12, 34, 68, 16, 80, 24])
    assert report["boxes_clipped"] == 1
    assert _kept(report, "0001_1:fracture")["boxes"]  # the other image is untouched
    assert report["filtered_by_reason"] == {"class": 2}  # a 'text' box on each image
    assert report["rows_in"] == report["rows_kept"] + 5 + 2  # each refused line is an input of its own


def test_yolo_bad_lines_are_named_beside_a_missing_image(fixture):
    build, curated = fixture
    folder = build("grazpedwri_dx")
    (folder / "images" / "0001_0.png").unlink()
    (folder / "labels" / "0001_0.txt").write_text("3 0.5 0.5 0.25 0.5\n3 0.5 0.5 0.1 -0.1\n")
    report = curated("grazpedwri_dx")
    assert sorted(problem[:3] for problem in report["problem_details"]) == [
        ("box_degenerate", "labels/0001_0.txt", "line 2"),
        ("image_missing", "labels", "labels/0001_0.txt")]
    assert not any("0001_0:" in row_id for row_id in report["kept_by_id"])


# ---- SLAKE detection.json: each item by itself -------------------------------------------------

def test_slake_a_bad_item_costs_that_item_only(fixture):
    build, curated = fixture
    path = build("slake") / "imgs" / "xmlab0" / "detection.json"  # beside source.jpg, 64 x 48
    path.write_text(json.dumps([{"Liver": [5, 6, 20, 10]},
                                {"Liver": [100, 100, 10, 10]},  # far outside
                                {"Kidney": [30, 20, 0, 8]},  # no width
                                {"Kidney": [30, 20, "nan", 8]},
                                {"Kidney": [1, 2]},  # not [x, y, w, h]
                                [1, 2],  # no object
                                {"": [1, 2, 3, 4]},  # no label
                                {"Kidney": [30, 20, 8, 8]},
                                {"Liver": [58, 40, 8, 4]}]))  # 6 of its 8 pixels wide inside: clipped, kept
    report = curated("slake")
    file = "imgs/xmlab0/detection.json"
    assert _places(report) == [("box_outside", file, "item 1"), ("box_degenerate", file, "item 2"),
                               ("box_nan", file, "item 3"), ("malformed_record", file, "item 4"),
                               ("malformed_record", file, "item 5"), ("missing_field", file, "item 6")]
    liver = _kept(report, "xmlab0:Liver")
    assert [(b["x1"], b["x2"]) for b in liver["boxes"]] == [(5.0, 25.0), (58.0, 64.0)]
    assert [(b["x1"], b["x2"]) for b in _kept(report, "xmlab0:Kidney")["boxes"]] == [(30.0, 38.0)]
    assert _kept(report, "xmlab1:Kidney")["boxes"] and report["boxes_clipped"] == 1
    assert report["quarantined"] == 6 and report["rows_in"] == report["rows_kept"] + 6 + report["filtered"]


def test_slake_bad_items_beside_a_missing_image_and_a_file_that_is_no_list(fixture):
    build, curated = fixture
    folder = build("slake") / "imgs"
    (folder / "xmlab0" / "source.jpg").unlink()
    (folder / "xmlab0" / "detection.json").write_text(json.dumps([{"Liver": [5, 6, 20, 10]},
                                                                  {"Liver": [5, 6, -20, 10]}]))
    (folder / "xmlab1" / "detection.json").write_text(json.dumps({"Liver": [5, 6, 20, 10]}))
    report = curated("slake")
    assert sorted(problem[:3] for problem in report["problem_details"]) == [
        ("box_degenerate", "imgs/xmlab0/detection.json", "item 1"),
        ("image_missing", "detection.json", "imgs/xmlab0/detection.json"),
        ("malformed_record", "detection.json", "imgs/xmlab1/detection.json")]  # the file is the record


# ---- a file of more bad boxes than any real one holds ------------------------------------------

@pytest.mark.parametrize(("name", "path", "bad", "record"), [
    ("grazpedwri_dx", "labels/0001_0.txt", lambda n: "3 0.5 0.5 0 0\n" * n, ("labels", "labels/0001_0.txt")),
    ("slake", "imgs/xmlab0/detection.json", lambda n: json.dumps([[1]] * n),
     ("detection.json", "imgs/xmlab0/detection.json"))])
def test_a_file_of_more_bad_boxes_than_a_real_one_holds_is_one_record(fixture, name, path, bad, record):
    from medmo_pipeline.data.adapters.grounding import MAX_BAD_BOXES

    build, curated = fixture
    (build(name) / path).write_text(bad(MAX_BAD_BOXES + 1))
    report = curated(name)
    assert [problem[:3] for problem in report["problem_details"]] == [("malformed_record", *record)]
    assert f"more than {MAX_BAD_BOXES}" in report["problem_details"][0][3]


def test_slake_reads_a_box_file_by_the_name_its_folder_gives_it(fixture):
    """The pattern matches detection.json in any case: a copy made on a case-insensitive disk keeps
    DETECTION.JSON, which is read under that name (it was matched, then read as detection.json)."""
    build, curated = fixture
    folder = build("slake") / "imgs" / "xmlab0"
    before = curated("slake")["rows_kept"]
    (folder / "detection.json").rename(folder / "DETECTION.JSON")
    report = curated("slake")
    assert report["rows_kept"] == before and not report["problem_details"]
