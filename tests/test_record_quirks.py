"""Record files with the quirks and damage real exports have, each curated the way the corpus job
does (``curate_source``) on the registry dataset's own fixture: a bad record costs that record,
named by its own file and row; a file the layout cannot be read from stops its source saying why;
nothing is kept that holds no question, no id or a value of the wrong kind."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import build_fixture, jpeg_bytes, png_bytes, write_file
from PIL import Image
from registry_sources import CREDENTIALS, REGISTRY, registry_fixture

from medmo_pipeline.data.adapters import coco
from medmo_pipeline.data.adapters.report_sections import report_sections
from medmo_pipeline.data.benchmarks.readers import iter_mimic_split
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.data.registry import SourceUnavailable, iter_source_rows


@pytest.fixture
def fixture(tmp_path, monkeypatch):
    """(write the registry dataset's fixture and return its folder, curate it and return the report)."""
    return registry_fixture(tmp_path, monkeypatch)


def test_a_record_of_a_source_split_over_files_is_named_by_its_own_file_and_row(fixture):
    build, curate = fixture
    folder = build("pathvqa")
    rows = pq.read_table(folder / "data/train-fixture.parquet").to_pylist()
    second = [{**row, "question": f"second file, question {index}"} for index, row in enumerate(rows)]
    second[1]["answer"] = "   "
    pq.write_table(pa.Table.from_pylist(second), folder / "data/train-zz.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:0], schema=pq.read_schema(folder / "data/train-fixture.parquet")),
                   folder / "data/train-empty.parquet")  # a valid file of no rows: read, nothing in it
    report = curate("pathvqa")
    assert report["problems"] == [("missing_answer", "data/train-zz.parquet", "row 2")]
    assert report["rows_kept"] == 2 * len(rows) - 1


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows([header, *rows])
    return out.getvalue()


def test_csv_rows_are_checked_against_the_header(fixture):
    """A row with more fields than the header (an unquoted comma cut its answer) is quarantined by
    row; trailing empty fields and a short first row are not layout problems."""
    build, curate = fixture
    folder = build("medquad")
    path = folder / "medDataset_processed.csv"
    path.write_text(_csv_text(["qtype", "Question", "Answer"], [
        ["symptoms", "What is flu?"],  # short: its answer is missing
        ["symptoms", "What is a cold?", "A virus", "", ""],  # trailing empty fields
        ["symptoms", "What is measles?", "A virus", " spread by droplets"],  # a comma left unquoted
    ]))
    report = curate("medquad")
    assert sorted(report["problems"]) == [("malformed_record", "medDataset_processed.csv", "row 3"),
                                          ("missing_answer", "medDataset_processed.csv", "row 1")]
    assert [row["answer"] for row in report["kept"]] == ["A virus"]


@pytest.mark.parametrize("header", [["qtype", "Question", "Answer", "Answer"], ["qtype", "Question", "Answer", "answer "]])
def test_a_column_named_twice_stops_the_source_naming_it(fixture, header):
    build, curate = fixture
    path = build("medquad") / "medDataset_processed.csv"
    path.write_text(_csv_text(header, [["symptoms", "What is flu?", "", "A virus"]]))
    with pytest.raises(SourceUnavailable, match=r"names the column\(s\) 'answer' more than once"):
        curate("medquad")


def test_a_duplicate_parquet_column_stops_the_source_naming_it(fixture):
    build, curate = fixture
    path = build("pathvqa") / "data/train-fixture.parquet"
    table = pq.read_table(path)
    pq.write_table(table.append_column("answer", table.column("answer")), path)
    with pytest.raises(SourceUnavailable, match=r"names the column\(s\) 'answer' more than once"):
        curate("pathvqa")


def test_a_utf16_record_file_stops_its_source_saying_so(fixture):
    build, curate = fixture
    path = build("medqa") / "phrases_no_exclude_train.jsonl"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    with pytest.raises(SourceUnavailable, match="is UTF-16 text .*save it as UTF-8"):
        curate("medqa")


def test_records_without_an_id_or_with_objects_for_text_are_quarantined(fixture):
    build, curate = fixture
    path = build("vqa_rad") / "VQA_RAD Dataset Public.json"
    records = json.loads(path.read_text())
    good = records[0]
    path.write_text(json.dumps([*records,
                                {**good, "qid": None, "question": "Which organ, without an id?"},
                                {key: value for key, value in good.items() if key != "qid"},
                                {**good, "qid": "a1", "answer": {"x": 1}},
                                {**good, "qid": "a2", "question": [None, True]},
                                {**good, "qid": "a3", "answer": "\u200b\u200b"}]))
    report = curate("vqa_rad")
    file, first = "VQA_RAD Dataset Public.json", len(records)
    assert report["problems"] == [
        ("missing_field", file, f"row {first + 1}"), ("missing_field", file, f"row {first + 2}"),
        ("malformed_record", file, f"row {first + 3}"), ("malformed_record", file, f"row {first + 4}"),
        ("missing_answer", file, f"row {first + 5}")]
    assert not any("None" in row["id"] or "{" in row["answer"] for row in report["kept"])


def test_a_question_without_text_is_quarantined_though_options_follow_it(fixture):
    build, curate = fixture
    path = build("medqa") / "phrases_no_exclude_train.jsonl"
    lines = path.read_text().splitlines()
    extra = [{"question": " \n", "options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "A"},
             {"options": {"A": "Aspirin", "B": "Heparin"}, "answer_idx": "B"},
             {"question": "Which is tenth?", "options": {str(n): f"option {n}" for n in range(1, 11)},
              "answer_idx": "J"}]
    path.write_text("\n".join([*lines, *map(json.dumps, extra)]) + "\n")
    report = curate("medqa")
    assert [reason for reason, _, _ in report["problems"]] == ["missing_question", "missing_question"]
    tenth = next(row for row in report["kept"] if row["messages"][0]["content"].startswith("Which is tenth?"))
    assert tenth["choices"] == [f"option {n}" for n in range(1, 11)]  # "10" after "9", not after "1"


def test_iu_xray_projection_table_problems(fixture):
    """The joined image table: a row that cannot be read is quarantined (counted), a table without
    its key column or without rows stops the source."""
    build, curate = fixture
    folder = build("iu_xray")
    projections = folder / "indiana_projections.csv"
    published = projections.read_bytes()
    projections.write_bytes(published + "1,caf\xe9.png,Frontal\r\n".encode("latin-1"))
    report = curate("iu_xray")
    last_row = len(published.splitlines())  # the header is line 1: the added row is this data row
    assert report["problems"] == [("invalid_utf8", "indiana_projections.csv", f"row {last_row}")]
    for broken, problem in ((published.replace(b"uid", b"UID_X", 1), "has no column 'uid'"),
                            (published.splitlines(keepends=True)[0], "holds no image rows")):
        projections.write_bytes(broken)
        with pytest.raises(SourceUnavailable, match=problem):
            curate("iu_xray")


def test_deeplesion_without_its_box_column_stops_its_source(fixture):
    build, curate = fixture
    path = build("deeplesion") / "DL_info.csv"
    path.write_bytes(path.read_bytes().replace(b"Bounding_boxes", b"Boxes", 1))
    with pytest.raises(SourceUnavailable, match="has no column 'Bounding_boxes'"):
        curate("deeplesion")


def test_nih_a_bad_box_row_costs_that_row_only_and_a_missing_image_is_named_so(fixture):
    build, curate = fixture
    path = build("nih_chest_xray") / "BBox_List_2017.csv"
    lines = path.read_text().splitlines()
    image, label = lines[1].split(",")[:2]
    path.write_text("\n".join([*lines, f"{image},{label},100,100,-50,40", "00099999_000.png,Mass,10,10,20,20"]) + "\n")
    report = curate("nih_chest_xray")
    assert report["problems"] == [("box_degenerate", "BBox_List_2017.csv", f"row {len(lines)}"),
                                  ("image_missing", "BBox_List_2017.csv", "00099999_000.png")]
    kept = next(row for row in report["kept"] if row["id"].endswith(f"{image}:{label}"))
    assert len(kept["boxes"]) == 1  # the image's good box of that label is kept


def test_medsg_reply_boxes_that_cannot_be_read_are_quarantined(fixture):
    build, curate = fixture
    path = build("medsg") / "MedSG-Train/Taskfixture.json"
    record = json.loads(path.read_text())[0]
    replies = ["lesion <|box_start|>(1,2),(10,12)<|box_end|>", "lesion <|box_start|>(nan,2),(10,12)<|box_end|>",
               "lesion <|box_start|>(10,12),(1,2)<|box_end|>", "lesion <|box_start|>(1,2),(3<|box_end|>"]
    path.write_text(json.dumps([{**record, "id": f"r{index}", "conversations": [
        {"from": "human", "value": "<image>\nFind the lesion."}, {"from": "gpt", "value": reply}]}
        for index, reply in enumerate(replies)]))
    report = curate("medsg")
    assert [reason for reason, _, _ in report["problems"]] == ["malformed_record"] * 3
    assert [len(row["boxes"]) for row in report["kept"]] == [1]


def test_yolo_labels_of_no_class_are_quarantined_and_a_bom_is_read_through(fixture):
    build, curate = fixture
    folder = build("grazpedwri_dx")
    labels = sorted((folder / "labels").glob("*.txt"))
    labels[0].write_bytes(b"99 0.5 0.5 0.2 0.2\n")
    labels[1].write_bytes(b"\xef\xbb\xbf3 0.5 0.5 0.2 0.2\r\n")
    report = curate("grazpedwri_dx")
    assert report["problems"] == [("malformed_record", f"labels/{labels[0].name}", "line 1")]  # by its line
    assert any(row["id"].endswith(f"{labels[1].stem}:fracture") for row in report["kept"])


def test_a_box_without_a_label_is_quarantined(fixture):
    build, curate = fixture
    path = build("slake") / "imgs/xmlab0/detection.json"
    path.write_text(json.dumps([{"": [1, 2, 3, 4]}]))
    report = curate("slake")
    assert [reason for reason, _, _ in report["problems"]] == ["missing_field"]


def _png(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def test_image_folders_class_and_sidecar(fixture, tmp_path):
    """The class is the first folder under the image folder (ImageFolder's rule: a slide folder
    below it keeps its class); an image outside any, or in a hidden one, has none; a caption file
    linked out of the root is refused like an image would be."""
    build, curate = fixture
    folder = build("valset") / "images"
    write_file(folder, "tumour/slide_0001/t1.png", png_bytes(32, 32, 3))
    write_file(folder, "loose.png", png_bytes(32, 32, 4))
    write_file(folder, ".ipynb_checkpoints/t-checkpoint.png", png_bytes(32, 32, 5))
    report = curate("valset")
    assert sorted(report["problems"]) == [("missing_field", "images", ".ipynb_checkpoints/t-checkpoint.png"),
                                          ("missing_field", "images", "loose.png")]
    nested = next(row for row in report["kept"] if row["id"].endswith("slide_0001/t1.png"))
    assert nested["answer"] == "tumour"
    captions = build("cisc") / "images"
    image = min(captions.glob("*/*.png"))
    (tmp_path / "secret.txt").write_text("not the dataset's")
    image.with_suffix(".txt").unlink(missing_ok=True)
    image.with_suffix(".txt").symlink_to(tmp_path / "secret.txt")
    report = curate("cisc")
    assert ("unsafe_path", "images", image.relative_to(captions).as_posix()) in report["problems"]
    assert not any("not the dataset's" in row["answer"] for row in report["kept"])


def test_an_image_that_is_not_16_bit_is_refused_where_16_bit_values_are_read(fixture):
    """An 8-bit image less DeepLesion's 32768 offset was an all-black image."""
    build, curate = fixture
    folder = build("ct_rate_medtrinity") / "images"
    write_file(folder, "a/grey8.png", _png(np.full((32, 32), 100, np.uint8)))
    write_file(folder, "a/photo.png", jpeg_bytes(32, 32))
    report = curate("ct_rate_medtrinity")
    assert sorted(reason for reason, _, _ in report["problems"]) == ["image_undecodable"] * 2


def _npz(folder: Path, images: np.ndarray, labels: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, X=images, y=labels)
    (folder / "tissuenet_v1.1_train.npz").write_bytes(buffer.getvalue())


def test_npz_float_images_keep_their_grey_levels_and_labels_must_be_ids(fixture):
    build, curate = fixture
    folder = build("deepcell")
    images = np.random.default_rng(1).random((4, 16, 20, 2)).astype(np.float32)  # 0-1, as TissueNet's
    labels = np.zeros((4, 16, 20, 2), np.float32)
    labels[:, 1:5, 2:7, 1] = 1
    labels[1, 10:12, 10:15, 1] = np.nan
    labels[2, 10:12, 10:15, 1] = 0.5
    labels[3, 10:12, 10:15, 1] = -3
    _npz(folder, images, labels)
    report = curate("deepcell")
    assert [reason for reason, _, _ in report["problems"]] == ["bad_number"] * 3
    (row,) = report["kept"]
    assert len(np.unique(np.asarray(Image.open(io.BytesIO(row["images"][0]["bytes"]))))) > 50  # not black and white


def test_an_npz_declaring_samples_of_no_pixel_stops_its_source_at_once(fixture):
    """A 450-byte archive declaring 10**12 samples of shape (0, 4, 2): each sample was read "whole"
    (0 bytes) and quarantined, about 10,000 a second, for ever."""
    build, curate = fixture
    folder = build("deepcell")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as npz:
        for key, dtype in (("X", "<f4"), ("y", "<i4")):
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False,
                                                          "shape": (10**12, 0, 4, 2)})
            npz.writestr(f"{key}.npy", header.getvalue())
    (folder / "tissuenet_v1.1_train.npz").write_bytes(archive.getvalue())
    with pytest.raises(SourceUnavailable, match=r"X.npy is \(1000000000000, 0, 4, 2\): its samples hold no pixel"):
        curate("deepcell")


def test_colour_coded_masks_and_masks_of_another_size(fixture):
    build, curate = fixture
    folder = build("ctc")  # the release as unzipped: <set>/01/tN.tif beside <set>/01_GT/SEG/man_segN.tif
    for old in folder.rglob("*.tif"):
        old.unlink()
    colours = np.zeros((32, 32, 3), np.uint8)
    colours[2:6, 3:9] = (255, 0, 0)
    colours[20:30, 10:12] = (255, 255, 0)  # same red: read by its red alone, one instance
    small = np.zeros((16, 16), np.uint16)
    small[2:6, 2:6] = 1
    write_file(folder, "Set/01/t0.tif", _png(np.full((32, 32), 90, np.uint8), "TIFF"))
    write_file(folder, "Set/01_GT/SEG/man_seg0.tif", _png(colours, "TIFF"))
    write_file(folder, "Set/01/t1.tif", _png(np.full((64, 64), 90, np.uint8), "TIFF"))
    write_file(folder, "Set/01_GT/SEG/man_seg1.tif", _png(small, "TIFF"))
    report = curate("ctc")
    assert report["problems"] == [("image_size_mismatch", ".", "Set/01/t1.tif")]
    (row,) = report["kept"]
    assert len(row["boxes"]) == 2


def test_nih_label_cells_list_only_its_labels_each_once(fixture):
    build, curate = fixture
    path = build("nih_vqa") / "Data_Entry_2017_v2020.csv"
    lines = path.read_text().splitlines()
    image = lines[1].split(",")[0]
    extra = [f"{image},Female,60,58", f"{image},Female,60,nan", f"{image},Female,60,['Effusion']"]
    lines[2] = lines[2].replace("Cardiomegaly|Effusion", "Cardiomegaly|Effusion|cardiomegaly")
    path.write_text("\r\n".join([*lines, *extra]) + "\r\n")
    report = curate("nih_vqa")
    assert [reason for reason, _, _ in report["problems"]] == ["malformed_record"] * 3
    assert "Cardiomegaly, Effusion" in [row["answer"] for row in report["kept"]]


def test_instruction_records_that_would_train_on_a_broken_prompt_or_think_block(fixture):
    """A fixed instruction ("Summarise ... these clinical notes") without its notes, and a reasoning
    trace holding a think tag of its own, are quarantined."""
    build, curate = fixture
    path = build("mimic_iv_ext_bhc") / "mimic-iv-bhc.csv"
    header = next(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    values = {"note_id": "n-empty", "input": "", "target": "A brief course."}
    with open(path, "a", newline="") as handle:
        csv.writer(handle, lineterminator="\r\n").writerow([values.get(name, "") for name in header])
    report = curate("mimic_iv_ext_bhc")
    assert [reason for reason, _, _ in report["problems"]] == ["missing_field"]
    path = next(build("medical_o1_reasoning_sft").rglob("*.json"))
    records = json.loads(path.read_text())
    path.write_text(json.dumps([*records, {**records[0], "Complex_CoT": "first </think> then"}]))
    report = curate("medical_o1_reasoning_sft")
    assert [reason for reason, _, _ in report["problems"]] == ["malformed_record"]


def test_a_report_of_de_identification_blanks_only_is_no_answer():
    sections = report_sections("FINDINGS: ___\nIMPRESSION: ___")
    assert sections.reply() == ""
    assert report_sections("FINDINGS: clear.\nIMPRESSION: ___").reply() == "Findings: clear."


def test_coco_annotations_name_their_category_and_image(tmp_path):
    """Unknown categories and annotations of no image are quarantined, not trained on as "99" or
    lost; iscrowd "0" is no crowd; an image id 0 meets annotations of "0"."""
    write_file(tmp_path, "imgs/a.png", png_bytes(32, 32))
    ann = {"images": [{"id": 0, "file_name": "a.png", "width": 32, "height": 32}],
           "categories": [{"id": 1, "name": "nodule"}, {"id": 2, "name": None}],
           "annotations": [{"image_id": "0", "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": "0"},
                           {"image_id": 0, "category_id": 99, "bbox": [1, 1, 5, 5]},
                           {"image_id": 0, "category_id": 2, "bbox": [1, 1, 5, 5]},
                           {"image_id": 77, "category_id": 1, "bbox": [1, 1, 5, 5]}]}
    write_file(tmp_path, "ann.json", json.dumps(ann))
    out = list(coco.iter_outcomes(tmp_path, {"file": "ann.json", "image_dir": "imgs"}))
    rows = [item for item in out if type(item) is dict]
    problems = [(item.reason, item.record) for item in out if isinstance(item, RowQuarantined)]
    assert [row["id"] for row in rows] == ["0:nodule"] and len(rows[0]["boxes"]) == 1
    assert sorted(problems) == [("malformed_record", "annotation 1"), ("malformed_record", "annotation 2"),
                                ("missing_join_key", "annotation 3")]


def test_a_mimic_split_row_whose_ids_are_no_numbers_is_quarantined_by_its_row(tmp_path):
    """Its ids make the report's path: "1/../../.." stopped the whole benchmark with a bare error."""
    write_file(tmp_path, "files/p10/p10000032/s50000001.txt", "FINDINGS: clear.\n")
    write_file(tmp_path, "files/p10/p10000032/s50000001/a.jpg", jpeg_bytes(32, 32))
    (tmp_path / "files/p1/p1").mkdir(parents=True)
    write_file(tmp_path, "split.csv", "dicom_id,study_id,subject_id,split\n"
                                      "a,50000001,10000032,test\nb,1,1/../../..,test\n")
    out = list(iter_mimic_split(tmp_path, {"file": "split.csv"}))
    assert [row["id"] for row in out if type(row) is dict] == ["p10/p10000032/s50000001"]
    assert [(item.reason, item.record) for item in out if isinstance(item, RowQuarantined)] == \
        [("malformed_record", "row 3")]


def test_an_image_name_with_a_trailing_space_before_its_suffix_is_read(fixture):
    """ROCO's ids are written with a trailing space in some rows: the suffix went after it
    (``ROCO_8 .jpg``) and the image was missing."""
    build, curate = fixture
    folder = build("roco")
    path = next(folder.rglob("captions.txt"))
    lines = path.read_text().splitlines()
    first_id = lines[0].split("\t")[0]
    lines[0] = lines[0].replace(first_id, first_id + " ", 1)
    path.write_text("\n".join(lines) + "\n")
    report = curate("roco")
    assert not any(reason == "image_missing" for reason, _, _ in report["problems"]), report["problems"]


def test_a_float_mask_of_fractional_ids_is_refused_not_cut_to_integers(fixture):
    build, curate = fixture
    folder = build("ctc")  # the release as unzipped: <set>/01/tN.tif beside <set>/01_GT/SEG/man_segN.tif
    for old in folder.rglob("*.tif"):
        old.unlink()
    mask = np.zeros((32, 32), np.float32)
    mask[2:6, 3:9], mask[10:20, 10:20] = 0.5, 2.7
    write_file(folder, "Set/01/t0.tif", _png(np.full((32, 32), 90, np.uint8), "TIFF"))
    write_file(folder, "Set/01_GT/SEG/man_seg0.tif", _png(mask, "TIFF"))
    report = curate("ctc")
    assert [reason for reason, _, _ in report["problems"]] == ["image_undecodable"]


def test_a_layout_version_the_files_do_not_have_stops_naming_it_and_the_others(tmp_path, monkeypatch):
    """MIMIC-CXR's dicom-2.1.0 picked for a mimic-cxr-jpg tree: no study finds its image, which is
    the layout's fault, not three rows'; a non-default version's failure quotes that version's own
    layout and instructions."""
    for variable in CREDENTIALS:
        monkeypatch.setenv(variable, "attested-for-the-test")
    mimic = REGISTRY.get("mimic_cxr")
    folder = tmp_path / mimic.origin.local_dir
    build_fixture("report", folder, mimic.adapters_for("jpg-2.1.0")[0].options)
    for dicom in folder.rglob("*.dcm"):
        dicom.unlink()
    assert any(folder.rglob("*.jpg"))
    with pytest.raises(SourceUnavailable, match=r"version dicom-2\.1\.0\): SourceLayoutError: none of its \d+ records "
                                                r"found its image file.*versions\.mimic_cxr \(jpg-2\.1\.0\)$"):
        list(iter_source_rows(mimic, tmp_path, "dicom-2.1.0"))
    assert len([row for row in iter_source_rows(mimic, tmp_path, "jpg-2.1.0") if type(row) is dict]) >= 1

    pmc = REGISTRY.get("pmc_vqa")
    for spec in pmc.adapters:  # the current release (v2) on disk, v1 asked for
        build_fixture(spec.family, tmp_path / pmc.origin.local_dir, spec.options)
    with pytest.raises(SourceUnavailable) as refused:
        list(iter_source_rows(pmc, tmp_path, "v1"))
    v1 = pmc.other_versions["v1"]
    assert v1.layout_source in str(refused.value) and v1.instructions.rstrip(".") in str(refused.value)
    assert pmc.layout_source not in str(refused.value)


def test_a_copy_that_did_not_keep_mtimes_curates_to_the_same_data_version(fixture):
    """rsync without -t, a fresh checkout: the same bytes under new mtimes are the same data."""
    build, curate = fixture
    folder = build("vqa_rad")
    first = curate("vqa_rad")
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(10**18, 10**18))
    again = curate("vqa_rad")
    assert (again["data_version"], again["revision"]) == (first["data_version"], first["revision"])


def test_record_values_no_row_should_train_on_and_files_of_odd_endings(fixture):
    """A class list YAML reads as booleans and null ("no", "~") made boxes labelled 'False' and
    'None'; a caption sidecar that is a folder read as an empty caption; a header repeated mid-file
    (two exports joined) became a question "Question"; CR-only line endings made a JSONL of 1,000
    records one broken line; a Parquet date Python cannot hold stopped the whole source unnamed;
    JSON's true and 1e999 became the answers 'True' and 'inf'."""
    build, curate = fixture
    folder = build("grazpedwri_dx")
    (folder / "meta.yaml").write_text("names: [boneanomaly, bonelesion, foreignbody, no, ~]\n")
    with pytest.raises(SourceUnavailable, match="class names must be text, not False"):
        curate("grazpedwri_dx")

    captions = build("cisc") / "images"
    image = min(captions.glob("*/*.png"))
    image.with_suffix(".txt").unlink(missing_ok=True)
    image.with_suffix(".txt").mkdir()
    assert ("unreadable_file", "images", image.relative_to(captions).as_posix()) in curate("cisc")["problems"]

    path = build("medquad") / "medDataset_processed.csv"
    text = path.read_text(encoding="utf-8-sig")
    path.write_text(text + text.splitlines()[0] + "\n" + text.splitlines()[1] + "\n", encoding="utf-8")
    report = curate("medquad")
    assert [reason for reason, _, _ in report["problems"]] == ["malformed_record"]
    assert not any(row["answer"] == "Answer" for row in report["kept"])

    jsonl = next(build("medqa").rglob("*.jsonl"))
    jsonl.write_bytes(jsonl.read_bytes().replace(b"\n", b"\r"))
    with pytest.raises(SourceUnavailable, match="its lines end in a carriage return alone"):
        curate("medqa")

    parquet = next(build("pathvqa").rglob("*.parquet"))
    table = pq.read_table(parquet)
    days = pa.array([0] * (table.num_rows - 1) + [2**31 - 1], pa.int32()).cast(pa.date32())
    pq.write_table(table.append_column("taken_on", days), parquet)
    report = curate("pathvqa")
    assert report["problems"] == [("bad_number", parquet.relative_to(parquet.parents[1]).as_posix(),
                                   f"row {table.num_rows}")]
    assert len(report["kept"]) == table.num_rows - 1

    meadow = next(build("medical_meadow_medqa").rglob("*.json"))
    records = json.loads(meadow.read_text())
    infinite = json.dumps({**records[0], "output": "INFINITE"}).replace('"INFINITE"', "1e999")
    meadow.write_text(json.dumps([*records, {**records[0], "output": True}])[:-1] + ", " + infinite + "]")
    report = curate("medical_meadow_medqa")
    assert sorted(reason for reason, _, _ in report["problems"]) == ["bad_number", "malformed_record"]
    assert not any(row["answer"] in ("True", "inf") for row in report["kept"])


def test_images_unzipped_into_a_folder_of_their_own_name_are_named_where_they_are(tmp_path, monkeypatch):
    """CheXpert Plus's PNG archive unpacked into PNG/PNG/: every row's image is "not there", and the
    source's message says where the first one is, so the user moves the folder instead of guessing."""
    for variable in CREDENTIALS:
        monkeypatch.setenv(variable, "attested-for-the-test")
    entry = REGISTRY.get("chexpert_plus")
    folder = tmp_path / entry.origin.local_dir
    build_fixture("report", folder, entry.adapters[0].options)
    (folder / "PNG").rename(tmp_path / "PNG")
    (folder / "PNG").mkdir()
    (tmp_path / "PNG").rename(folder / "PNG" / "PNG")
    with pytest.raises(SourceUnavailable, match=r"none of its \d+ records found its image file; the first, "
                                                r"PNG/(\S+)\.png, is not there, but PNG/PNG/\1\.png is"):
        list(iter_source_rows(entry, tmp_path))
    # files under other names than the entry reads: the first one looked for is named
    (folder / "PNG" / "PNG").rename(tmp_path / "elsewhere")
    with pytest.raises(SourceUnavailable, match=r"found its image file; the first looked for: PNG/\S+\.png"):
        list(iter_source_rows(entry, tmp_path))
