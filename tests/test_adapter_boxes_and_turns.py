"""Box lists and conversations curated as the corpus job does, on the registry dataset's own fixture:
a box row curation would refuse costs that row (named by its own CSV row or annotation), not its
image's other boxes; every reply of a grounding conversation is held to its box markers; a think tag
of a reply's own, a record without an id and a category named twice are refused."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fixtures_formats import png_bytes, write_file
from registry_sources import registry_fixture

from medmo_pipeline.data import shards
from medmo_pipeline.data.adapters import coco, iter_samples
from medmo_pipeline.data.adapters.records import SourceLayoutError
from medmo_pipeline.data.curation import curate
from medmo_pipeline.data.curation.rules import CurationLimits, Rejected, clipped_boxes
from medmo_pipeline.schema.boxes import BoxRefused, clip_box


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    """(write the registry dataset's fixture and return its folder, curate it and return the report)."""
    return registry_fixture(tmp_path, monkeypatch)


# ---- box lists: each box row by itself ------------------------------------------------------------

def test_nih_a_box_row_outside_its_image_costs_that_row_only(fixture):
    build, curated = fixture
    path = build("nih_chest_xray") / "BBox_List_2017.csv"
    lines = path.read_text().splitlines()
    image = "00013118_008.png"  # 1024 x 1024
    added = [f"{image},Effusion,100,100,50,50",  # good
             f"{image},Effusion,2000,2000,10,10",  # far outside
             f"{image},Effusion,1000,100,30,40",  # 24 of its 30 pixels wide inside: clipped, kept
             f"{image},Mass,1000,1000,40,40"]  # a corner inside, 36% of its area: the label's only box
    path.write_text("\n".join([*lines, *added]) + "\n")
    report = curated("nih_chest_xray")
    first = len(lines)  # the header is no row: the first added line is row len(lines)
    assert [problem[:3] for problem in report["problem_details"]] == [
        ("box_outside", "BBox_List_2017.csv", f"row {first + 1}"),
        ("box_outside", "BBox_List_2017.csv", f"row {first + 3}")]
    assert "vs image 1024x1024" in report["problem_details"][0][3]
    effusion = report["kept_by_id"][f"nih_chest_xray:{image}:Effusion"]
    assert [(b["x1"], b["x2"]) for b in effusion["boxes"]] == [(100.0, 150.0), (1000.0, 1024.0)]
    assert report["boxes_clipped"] == 1
    assert not any(row_id.endswith(":Mass") for row_id in report["kept_by_id"])
    assert report["rows_in"] == report["rows_kept"] + 2  # the two refused rows are inputs of their own


def test_deeplesion_a_reversed_or_outside_box_costs_its_own_csv_row(fixture):
    build, curated = fixture
    path = build("deeplesion") / "DL_info.csv"
    header, *rows = list(csv.reader(path.open(newline="")))
    base = dict(zip(header, rows[0], strict=True))  # slice 000001_01_01_103.png, 64 x 64
    with path.open("a", newline="") as handle:
        csv.writer(handle).writerows([[{**base, "Bounding_boxes": box}[name] for name in header]
                                      for box in ("40, 40, 30, 30", "100, 100, 120, 120")])
    report = curated("deeplesion")
    assert sorted(problem[:3] for problem in report["problem_details"]) == [
        ("box_degenerate", "DL_info.csv", f"row {len(rows) + 1}"),
        ("box_outside", "DL_info.csv", f"row {len(rows) + 2}")]
    assert len(report["kept_by_id"]["deeplesion:000001_01_01_103:liver lesion"]["boxes"]) == 2  # the fixture's two


def _coco(root: Path, annotations: list[dict], categories: list[dict]) -> None:
    write_file(root, "imgs/a.png", png_bytes(64, 48, seed=1))
    write_file(root, "ann.json", json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 10 + i, "image_id": 1, "category_id": 1, **a} for i, a in enumerate(annotations)],
        "categories": categories}))


def test_coco_a_bad_annotation_costs_that_annotation_only(tmp_path):
    _coco(tmp_path, [{"bbox": [1, 1, 5, 5]}, {"bbox": [30, 10, -5, 5]}, {"bbox": [60, 40, 20, 20]},
                     {"bbox": [58, 1, 8, 8]}], [{"id": 1, "name": "nodule"}])
    report = curate(coco.iter_outcomes(tmp_path, {"file": "ann.json", "image_dir": "imgs"}), tmp_path / "out",
                    source="coco_test")
    problems = [(q["reason"], q["file"], q["record"]) for q in pq.read_table(report["quarantine_path"]).to_pylist()]
    assert sorted(problems) == [("box_degenerate", "ann.json", "annotation 1"),
                                ("box_outside", "ann.json", "annotation 2")]
    [row] = shards.iter_rows(Path(report["shard_dir"]))
    assert [(b["x1"], b["x2"]) for b in row["boxes"]] == [(1.0, 6.0), (58.0, 64.0)]  # the last one clipped
    assert report["accounted"] and report["rows_in"] == 3


def test_coco_a_category_id_listed_twice_stops_the_source(tmp_path):
    _coco(tmp_path, [{"bbox": [1, 1, 5, 5]}], [{"id": 1, "name": "nodule"}, {"id": "1", "name": "mass"}])
    with pytest.raises(SourceLayoutError, match=r"ann\.json .*category id '1' is listed twice"):
        list(coco.iter_outcomes(tmp_path, {"file": "ann.json", "image_dir": "imgs"}))


@pytest.mark.parametrize("box", [(1, 2, 30, 40), (-2, 0, 8, 10), (90, 90, 130, 130), (95, 0, 130, 10),
                                 (5, 5, 5, 9), (9, 1, 3, 4), (math.nan, 1, 2, 3), (1, 1, math.inf, 3)])
def test_adapters_and_curation_judge_a_box_alike(box):
    """The adapters' rule is curation's: the same box is kept (and clipped alike) or refused alike."""
    try:
        expected = clip_box(box, 100, 100)
    except BoxRefused as refused:
        with pytest.raises(Rejected) as rejected:
            clipped_boxes([dict(zip(("x1", "y1", "x2", "y2"), box, strict=True))], (100, 100), CurationLimits())
        assert rejected.value.reason == refused.reason
        return
    [kept], clipped = clipped_boxes([dict(zip(("x1", "y1", "x2", "y2"), box, strict=True))], (100, 100),
                                    CurationLimits())
    assert (kept["x1"], kept["y1"], kept["x2"], kept["y2"]) == expected
    assert clipped == (expected != tuple(map(float, box)))


# ---- conversations: every reply, every record ---------------------------------------------------

GOOD_BOX = "lesion <|box_start|>(1,2),(10,12)<|box_end|>"


def _turns(*replies: str, images: int = 1) -> list[dict]:
    turns = []
    for index, reply in enumerate(replies):
        question = "<image>\n" * images + "Find the lesion." if index == 0 else "And another?"
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": reply}]
    return turns


def test_medsg_every_reply_is_held_to_its_box_markers(fixture):
    build, curated = fixture
    folder = build("medsg")
    for i in range(12):
        write_file(folder, f"MedSG-Train/T/m{i}.png", png_bytes(seed=400 + i))  # 64 x 48
    image = iter(f"MedSG-Bench/MedSG-Train/T/m{i}.png" for i in range(12))
    records = [
        ("later_nan", [next(image)], _turns(GOOD_BOX, "lesion <|box_start|>(nan,2),(10,12)<|box_end|>")),
        ("later_reversed", [next(image)], _turns(GOOD_BOX, "<box>[[10, 12, 1, 2]]</box>")),
        ("several_cut_off", [next(image), next(image)],
         _turns("In the second image. <|box_start|>(1,2),(3<|box_end|>", images=2)),
        ("several_reversed", [next(image), next(image)],
         _turns("In the second image. <|box_start|>(10,12),(1,2)<|box_end|>", images=2)),
        ("one_of_two_nan", [next(image)], _turns(GOOD_BOX + " and <|box_start|>(nan,2),(10,12)<|box_end|>")),
        ("later_outside", [next(image)], _turns(GOOD_BOX, "lesion <|box_start|>(1,2),(500,12)<|box_end|>")),
        ("good", [next(image)], _turns(GOOD_BOX + " and <|box_start|>(20,20),(30,40)<|box_end|>", "The liver.")),
        ("good_several", [next(image), next(image)],
         _turns("In the second image. <|box_start|>(1,2),(10,12)<|box_end|>", images=2)),
    ]
    (folder / "MedSG-Train/Taskfixture.json").write_text(json.dumps(
        [{"id": name, "images": images, "conversations": turns} for name, images, turns in records]))
    report = curated("medsg")
    problems = [(reason, record, detail.split(": ")[1]) for reason, _, record, detail in report["problem_details"]]
    assert problems == [("malformed_record", "row 1", "conversations[3]"),
                        ("malformed_record", "row 2", "conversations[3]"),
                        ("malformed_record", "row 3", "conversations[1]"),
                        ("malformed_record", "row 4", "conversations[1]"),
                        ("malformed_record", "row 5", "conversations[1]"),
                        ("bad_number", "row 6", ("box [1.0, 2.0, 500.0, 12.0] lies outside the 64 x 48 frame of "
                                                 "scale 'pixels' (image 64 x 48)"))]
    assert sorted(report["kept_by_id"]) == ["medsg:good", "medsg:good_several"]
    assert len(report["kept_by_id"]["medsg:good"]["boxes"]) == 2  # both boxes the first reply shows
    assert report["kept_by_id"]["medsg:good_several"]["boxes"] == []  # the reply names which image: text only


def test_a_record_without_an_id_is_missing_field_not_its_place_in_the_file(fixture, tmp_path):
    build, curated = fixture
    folder = build("pubmed_vision")
    for i in range(3):
        write_file(folder, f"images/p{i}.jpg", png_bytes(seed=900 + i))
    conversation = [{"from": "human", "value": "<image>\nWhat is shown?"}, {"from": "gpt", "value": "A CT."}]
    (folder / "PubMedVision_InstructionTuning_VQA.json").write_text(json.dumps([
        {"id": "1", "image": ["images/p0.jpg"], "conversations": conversation},
        {"image": ["images/p1.jpg"], "conversations": conversation},  # no id: its place would be "1"
        {"id": "", "image": ["images/p2.jpg"], "conversations": conversation}]))
    report = curated("pubmed_vision")
    assert [problem[:3] for problem in report["problem_details"]] == [
        ("missing_field", "PubMedVision_InstructionTuning_VQA.json", "row 2"),
        ("missing_field", "PubMedVision_InstructionTuning_VQA.json", "row 3")]
    assert list(report["kept_by_id"]) == ["pubmed_vision:1"]
    # a layout that names no id field numbers its records in file order
    options = {"file": "records.json", "id_field": ""}
    write_file(tmp_path / "no_ids", "a.png", png_bytes(seed=1))
    write_file(tmp_path / "no_ids", "records.json", json.dumps([{"image": "a.png", "conversations": conversation}] * 2))
    assert [row["id"] for row in iter_samples("llava_json", tmp_path / "no_ids", options)] == ["0", "1"]


# ---- instruction sets: a think tag of the reply's own ----------------------------------------------

def test_a_reply_with_a_think_tag_of_its_own_is_refused_with_or_without_a_trace(fixture):
    build, curated = fixture
    folder = build("medical_o1_reasoning_sft")
    (folder / "medical_o1_sft.json").write_text(json.dumps([
        {"Question": "Q1?", "Complex_CoT": "", "Response": "<think>made up</think>Final answer A."},
        {"Question": "Q2?", "Complex_CoT": "", "Response": "Final answer B."},
        {"Question": "Q3?", "Complex_CoT": "Step one.", "Response": "Final answer C."}]))
    report = curated("medical_o1_reasoning_sft")
    assert [problem[:3] for problem in report["problem_details"]] == [("malformed_record", "medical_o1_sft.json", "row 1")]
    replies = sorted(row["messages"][-1]["content"] for row in report["kept_by_id"].values())
    assert replies == ["<think>\nStep one.\n</think>\nFinal answer C.", "Final answer B."]

    folder = build("alpacare_medinstruct_52k")
    (folder / "data/MedInstruct-52k.json").write_text(json.dumps([
        {"instruction": "Q?", "input": "", "output": "The answer.</think>"},
        {"instruction": "Q2?", "input": "", "output": "Another answer."}]))
    report = curated("alpacare_medinstruct_52k")
    assert [problem[:3] for problem in report["problem_details"]] == [
        ("malformed_record", "data/MedInstruct-52k.json", "row 1")]
    assert [row["answer"] for row in report["kept_by_id"].values()] == ["Another answer."]
