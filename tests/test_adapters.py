"""Adapters by format family: each registry dataset's adapter parses a fixture in that dataset's
format, and the format conventions (box conventions, windowing, answer letters) hold."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fixtures_formats import build_fixture, copy_dicom, png16_bytes, png_bytes, write_file
from PIL import Image
from pydicom.data import get_testdata_files

from medmo_pipeline.data.adapters import ADAPTERS, iter_outcomes, iter_samples
from medmo_pipeline.data.adapters.report import split_sections
from medmo_pipeline.data.curation import curate
from medmo_pipeline.data.images import dicom_entry, inspect_image, window_to_uint8
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.data.registry import iter_source_rows, load_registry
from medmo_pipeline.schema.boxes import pixels_to_relative
from medmo_pipeline.schema.rows import validate_row

REGISTRY = load_registry()
CASES = [pytest.param(entry, spec, id=f"{entry.name}-{spec.family}")
         for entry in REGISTRY.datasets for spec in entry.adapters]
CASES += [pytest.param(entry, spec, id=f"{entry.name}@{version}-{spec.family}")
          for entry in REGISTRY.datasets for version, layout in entry.other_versions.items() for spec in layout.adapters]


def pixels(entry: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(entry["bytes"])))


@pytest.mark.parametrize(("entry", "spec"), CASES)
def test_every_registry_dataset_parses_a_fixture_in_its_format(entry, spec, tmp_path):
    expected = build_fixture(spec.family, tmp_path / "src", spec.options)
    rows = list(iter_samples(spec.family, tmp_path / "src", spec.options))
    assert len(rows) == expected > 0
    for row in rows:
        validate_row(row)
        assert row["task"] in entry.tasks or row["task"] in ("grounding", "vqa", "caption", "report")
    report = curate(rows, tmp_path / "out", source=entry.name, shard_rows=50)
    assert report["quarantined_by_reason"] == {} and report["rows_kept"] == expected


def test_every_family_is_used_or_tested():
    used = {spec.family for entry in REGISTRY.datasets for spec in entry.adapters}
    assert used | {"coco"} == set(ADAPTERS)


def test_iter_source_rows_stamps_source_licence_and_ids(tmp_path, monkeypatch):
    entry = REGISTRY.get("slake")
    for spec in entry.adapters:
        build_fixture(spec.family, tmp_path / "slake", spec.options)
    rows = [row for row in iter_source_rows(entry, tmp_path) if type(row) is dict]
    assert {row["source"] for row in rows} == {"slake"} and {row["license"] for row in rows} == {entry.licence}
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == len(ids) and all(i.startswith("slake:") for i in ids)
    assert any(i.startswith("slake:box_json_per_image/") for i in ids)


def test_llava_placeholders_removed_and_images_kept_in_order(tmp_path):
    options = {"file": "conv.json", "image_dir": "imgs"}
    build_fixture("llava_json", tmp_path, options)
    rows = list(iter_samples("llava_json", tmp_path, options))
    two = rows[1]
    assert [image["path"] for image in two["images"]] == ["imgs/conv1_0.png", "imgs/conv1_1.png"]
    assert all("<image>" not in m["content"] for row in rows for m in row["messages"])
    assert [m["role"] for m in two["messages"]] == ["user", "assistant", "user", "assistant"]
    assert two["answer"] == "The liver."


def test_vqa_closed_yes_no_gets_choices_open_gets_none(tmp_path):
    options = REGISTRY.get("vqa_rad").adapters[0].options
    build_fixture("vqa", tmp_path, options)
    rows = list(iter_samples("vqa", tmp_path, options))
    closed = [r for r in rows if r["answer"] == "yes"]
    opened = [r for r in rows if r["answer"] == "Left lung"]  # open answers keep their case
    assert closed and all(r["choices"] == ["yes", "no"] for r in closed)
    assert opened and all(r["choices"] == [] for r in opened)


@pytest.mark.parametrize(("answer_format", "index_base"), [("letter", 0), ("index", 0), ("index", 1), ("text", 0)])
def test_multiple_choice_answers_become_letters(tmp_path, answer_format, index_base):
    options = {"file": "mc.jsonl", "options_field": "options", "answer_format": answer_format,
               "index_base": index_base}
    build_fixture("multiple_choice", tmp_path, options)
    rows = list(iter_samples("multiple_choice", tmp_path, options))
    assert [row["answer"] for row in rows] == ["A", "B", "C"]
    assert rows[1]["choices"] == ["Aspirin", "Heparin", "Warfarin", "Insulin"]
    assert "B. Heparin" in rows[1]["messages"][0]["content"]


def test_instruction_keeps_reasoning_in_think_tags(tmp_path):
    options = {"file": "o1.json", "instruction_field": "Question", "input_field": "",
               "reasoning_field": "Complex_CoT", "output_field": "Response"}
    build_fixture("text_instruction", tmp_path, options)
    row = next(iter_samples("text_instruction", tmp_path, options))
    assert row["messages"][1]["content"].startswith("<think>\nStep by step reasoning 0.\n</think>\n")
    assert row["answer"] == "Answer 0: rest and fluids."


def test_report_sections_from_free_text():
    text = "EXAMINATION: CHEST\nFINDINGS: Clear lungs.\n  No effusion.\nIMPRESSION:\n No acute process."
    assert split_sections(text) == ("Clear lungs. No effusion.", "No acute process.")


@pytest.mark.parametrize(("version", "suffix"), [("jpg-2.1.0", ".jpg"), ("dicom-2.1.0", ".dcm")])
def test_mimic_study_folders_read_the_images_of_their_version(tmp_path, version, suffix):
    options = REGISTRY.get("mimic_cxr").adapters_for(version)[0].options
    build_fixture("report", tmp_path, options)
    rows = list(iter_samples("report", tmp_path, options))
    assert rows[0]["id"] == "p10/p10000032/s50000000"
    assert rows[0]["messages"][1]["content"] == "Findings: Lungs are clear 0.\nImpression: No acute process 0."
    assert [Path(i["path"]).suffix for i in rows[0]["images"]] == [suffix]
    assert pixels(rows[0]["images"][0]).dtype == np.uint8  # DICOM windowed to 8 bits


def test_nih_bbox_xywh_becomes_xyxy_and_relative_answer(tmp_path):
    build_fixture("nih_bbox_csv", tmp_path, {})
    rows = {row["id"]: row for row in iter_samples("nih_bbox_csv", tmp_path, {})}
    row = rows["00013118_008.png:Atelectasis"]
    box = row["boxes"][0]
    assert (box["x1"], box["y1"]) == pytest.approx((225.084745762712, 547.019216763771))
    assert (box["x2"], box["y2"]) == pytest.approx((225.084745762712 + 86.7796610169491,
                                                    547.019216763771 + 79.1864406779661))
    assert row["images"][0]["width"] == 1024
    assert row["answer"] == "Atelectasis <box>[[220, 534, 305, 612]]</box>"
    assert set(rows) == {"00013118_008.png:Atelectasis", "00014716_007.png:Atelectasis", "00014716_007.png:Nodule"}


def test_deeplesion_16bit_hu_windowed_boxes_split_and_labels(tmp_path):
    build_fixture("deeplesion_csv", tmp_path, {})
    rows = {row["id"]: row for row in iter_samples("deeplesion_csv", tmp_path, {})}
    liver = rows["000001_01_01_103:liver lesion"]
    assert len(liver["boxes"]) == 2 and liver["split"] == "train"
    assert rows["000002_02_01_015:lesion"]["split"] == "eval"  # Train_Val_Test = 3
    image = pixels(liver["images"][0])
    # window "-175, 275" (center 50, width 450): -1000 HU -> 0, 60 HU -> about 142
    assert image.dtype == np.uint8 and image[0, 0] == 0
    assert image[20, 20] == window_to_uint8(np.array([60.0]), 50.0, 450.0)[0]
    assert 130 < image[20, 20] < 150


def test_deeplesion_boxes_scale_from_csv_image_size(tmp_path):
    from fixtures_formats import build_deeplesion_csv

    from medmo_pipeline.data.adapters.deeplesion import Options

    build_deeplesion_csv(tmp_path, Options(), image_size=64, csv_size=128)
    row = next(r for r in iter_samples("deeplesion_csv", tmp_path, {}) if r["id"].endswith("lesion") and
               r["id"].startswith("000002"))
    assert (row["boxes"][0]["x1"], row["boxes"][0]["x2"]) == (10.0, 15.0)


def test_yolo_normalised_centres_to_pixels_and_skipped_classes(tmp_path):
    options = REGISTRY.get("grazpedwri_dx").adapters[0].options
    build_fixture("yolo", tmp_path, options)
    rows = list(iter_samples("yolo", tmp_path, options))
    assert {row["boxes"][0]["label"] for row in rows} == {"fracture"}
    first = rows[0]["boxes"]  # 80 x 40 image; "3 0.5 0.5 0.25 0.5" -> (30, 10, 50, 30)
    assert (first[0]["x1"], first[0]["y1"], first[0]["x2"], first[0]["y2"]) == pytest.approx((30, 10, 50, 30))
    assert rows[0]["answer"].startswith("fracture <box>[[375, 250, 625, 750], ")


def test_coco_boxes_by_category_and_crowd_skipped(tmp_path):
    build_fixture("coco", tmp_path, {"file": "ann.json", "image_dir": "img"})
    rows = {row["id"]: row for row in iter_samples("coco", tmp_path, {"file": "ann.json", "image_dir": "img"})}
    assert set(rows) == {"0:mass", "0:nodule", "1:nodule"}
    # an image whose boxes are all crowd, and one without any, are counted as left out, with why
    data = json.loads((tmp_path / "ann.json").read_text())
    data["images"] += [{"id": 2, "file_name": "coco0.png"}, {"id": 3, "file_name": "coco1.png"}]
    data["annotations"].append({"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 9, 9], "iscrowd": 1})
    (tmp_path / "ann.json").write_text(json.dumps(data))
    outcomes = [item for item in iter_outcomes("coco", tmp_path, {"file": "ann.json", "image_dir": "img"})
                if not isinstance(item, dict)]
    assert [(type(item).__name__, item.reason) for item in outcomes] == [("RowFiltered", "crowd"),
                                                                         ("RowFiltered", "no_finding")]
    assert rows["0:nodule"]["boxes"] == [{"label": "nodule", "x1": 4.0, "y1": 6.0, "x2": 24.0, "y2": 16.0}]
    assert rows["0:nodule"]["answer"] == "nodule <box>[[{}, {}, {}, {}]]</box>".format(
        *pixels_to_relative((4, 6, 24, 16), 64, 48))


def test_instance_masks_give_tight_boxes(tmp_path):
    build_fixture("instance_masks", tmp_path, {})
    row = next(iter_samples("instance_masks", tmp_path, {}))
    assert [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in row["boxes"]] == [(3, 2, 9, 6), (10, 20, 12, 30)]


def test_real_dicom_files_rescaled_and_windowed(tmp_path):
    ct_path = Path(get_testdata_files("CT_small.dcm")[0])
    dataset = pydicom.dcmread(ct_path)
    hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    entry = dicom_entry(ct_path, default_window=(40.0, 400.0))
    assert (entry["width"], entry["height"]) == (dataset.Columns, dataset.Rows)
    assert inspect_image(entry["bytes"])[2] == "PNG"
    np.testing.assert_array_equal(pixels(entry), window_to_uint8(hu, 40.0, 400.0))
    full = pixels(dicom_entry(ct_path))  # no window in the file, none given: full range
    assert full.min() == 0 and full.max() == 255


def test_image_folder_reads_real_dicom_and_16bit_png(tmp_path):
    copy_dicom("MR_small.dcm", tmp_path / "images" / "t2" / "a.dcm")
    copy_dicom("CT_small.dcm", tmp_path / "images" / "ct" / "b.dcm")
    options = {"image_dir": "images", "pattern": "**/*.dcm"}
    rows = list(iter_samples("image_folder", tmp_path, options))
    assert [row["messages"][1]["content"] for row in rows] == ["ct", "t2"]
    assert [(r["images"][0]["width"], r["images"][0]["height"]) for r in rows] == [(128, 128), (64, 64)]
    values = np.array([[32768 - 1000, 32768], [32768 + 40, 32768 + 1000]])
    write_file(tmp_path, "png16/liver/x.png", png16_bytes(np.kron(values, np.ones((8, 8)))))
    row = next(iter_samples("image_folder", tmp_path, {"image_dir": "png16", "png16_offset": 32768,
                                                       "default_window": [40, 400]}))
    image = pixels(row["images"][0])
    assert (image[0, 0], image[8, 8], image[0, 8]) == (0, 255, window_to_uint8(np.array([0.0]), 40, 400)[0])


def test_paths_from_data_files_cannot_escape_the_root(tmp_path):
    """A path leaving the root quarantines its record (naming file and row); the next record is read."""
    (tmp_path / "outside.png").write_bytes(png_bytes())
    root = tmp_path / "ds"
    write_file(root, "ok.png", png_bytes())
    for bad in ("../outside.png", str(tmp_path / "outside.png")):
        (root / "vqa.json").write_text(json.dumps([{"image": bad, "question": "q?", "answer": "a"},
                                                   {"image": "ok.png", "question": "q?", "answer": "a"}]))
        problem, row = list(iter_outcomes("vqa", root, {"file": "vqa.json"}))
        assert isinstance(problem, RowQuarantined) and problem.reason == "unsafe_path"
        assert (problem.file, problem.record) == ("vqa.json", "row 1") and bad in problem.detail
        assert row["images"][0]["path"] == "ok.png"


def test_missing_image_file_is_left_to_curation(tmp_path):
    (tmp_path / "vqa.json").write_text(json.dumps([{"image": "gone.png", "question": "q?", "answer": "a"}]))
    row = next(iter_samples("vqa", tmp_path, {"file": "vqa.json"}))
    assert row["images"][0]["bytes"] is None
    report = curate([row], tmp_path / "out", source="x", shard_rows=10)
    assert report["quarantined_by_reason"] == {"image_missing": 1}


def test_headerless_tsv_columns_and_answer_lists(tmp_path):
    """ROCO's captions.txt has no header row (``columns`` names them); MIMIC-CXR-VQA answers are lists."""
    write_file(tmp_path, "captions.txt", "ROCO_00002\t Computed tomography of the chest, axial.\r\n")
    write_file(tmp_path, "images/ROCO_00002", png_bytes())
    options = {"file": "captions.txt", "format": "tsv", "columns": ["id", "caption"], "id_field": "id",
               "image_field": "id", "image_dir": "images"}
    (row,) = iter_samples("caption", tmp_path, options)
    assert row["id"] == "ROCO_00002" and row["messages"][1]["content"] == "Computed tomography of the chest, axial."
    write_file(tmp_path, "train.json", json.dumps([{"idx": 7, "image_path": "images/ROCO_00002", "question": "Where?",
                                                    "answer": ["left lung", "right lung"]}]))
    (row,) = iter_samples("vqa", tmp_path, {"file": "train.json", "image_field": "image_path", "id_field": "idx"})
    assert row["answer"] == "left lung, right lung"


@pytest.mark.parametrize("text", ["<image>\nWhat is shown?", "a  <image>  <image>  b", "<image><image>x", "x<image>",
                                  "no placeholder ", "\t<image>\u2003y\u00a0<image>", "<IMAGE> kept", "", "<image>"])
def test_image_placeholders_go_with_their_whitespace_as_the_pattern_took_them(text):
    import re

    from medmo_pipeline.data.adapters.common import strip_image_tokens

    assert strip_image_tokens(text) == re.sub(r"\s*<image>\s*", " ", text).strip()


def test_a_long_whitespace_run_beside_no_placeholder_is_read_in_one_pass():
    """``\\s*<image>\\s*`` retried from each of 40,000 spaces took 2 s; a million is one pass."""
    from guards import cpu_seconds_limit

    from medmo_pipeline.data.adapters.common import strip_image_tokens

    with cpu_seconds_limit(2.0):
        assert strip_image_tokens(" " * 1_000_000 + "x <image> y") == "x y"


def test_a_record_that_gives_nothing_is_counted_not_lost():
    """A record converted to nothing (no box, no text) is a RowFiltered ("no_row"): every input
    ends as kept, quarantined or filtered. A pass that only gathers records for a later one says so."""
    from medmo_pipeline.data.adapters.common import guarded
    from medmo_pipeline.data.outcomes import FILTER_REASONS, RowFiltered

    convert = lambda index, record: [{"id": record}] if record else []  # noqa: E731
    items = list(guarded(enumerate(["a", "", "b"]), "f.json", convert))
    assert [item.get("id") if isinstance(item, dict) else (item.reason, item.detail) for item in items] == [
        "a", ("no_row", "f.json row 2: nothing to train on in this record"), "b"]
    assert isinstance(items[1], RowFiltered) and "no_row" in FILTER_REASONS
    assert list(guarded(enumerate(["", ""]), "f.json", convert, collecting=True)) == []


def test_an_empty_mask_is_a_field_of_view_with_no_finding(tmp_path):
    """An all-zero mask gives no box: counted as no_finding (it gave no row and no word before)."""
    write_file(tmp_path, "images/a.png", png_bytes(24, 24, seed=1))
    blank = io.BytesIO()
    Image.fromarray(np.zeros((24, 24), dtype=np.uint8)).save(blank, format="PNG")
    write_file(tmp_path, "masks/a.png", blank.getvalue())
    items = list(iter_outcomes("instance_masks", tmp_path, {}))
    assert [(type(item).__name__, item.reason) for item in items] == [("RowFiltered", "no_finding")]
