"""Round 4 of reading releases exactly as their publishers ship them: each test writes a small copy
of a published layout in tmp_path (real file, folder and column names, header quirks) and curates it
through its registry entry, checking what is kept, quarantined (reason, file, row) and filtered."""
# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)

from __future__ import annotations

import csv

import numpy as np
import pytest
from fixtures_formats import DL_COLUMNS, jpeg_bytes, png16_bytes, png_bytes, write_file
from test_published_layouts import accounted, curate, dataset, kept_rows, quarantine  # noqa: F401 - curate: the fixture

from medmo_pipeline.data.adapters.labels import CHEXPERT_LABELS
from medmo_pipeline.data.registry import SourceUnavailable

# ---- NIH ChestX-ray14 as kaggle.com/datasets/nih-chest-xrays/data ships it -----------------------
# The Kaggle copy keeps the box's files but unpacks each images_0NN archive into a folder of its own:
# images_001/images/*.png ... images_012/images/*.png. Every record's image was missing there, and
# the whole source stopped ("none of its records found its image file").


def test_nih_boxes_are_read_from_the_kaggle_copys_twelve_image_folders(tmp_path, curate):
    root = dataset(tmp_path, "nih_chest_xray")
    write_file(root, "BBox_List_2017.csv", "\ufeffImage Index,Finding Label,Bbox [x,y,w,h],,,\r\n"
               "00013118_008.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,\r\n"
               "00014716_007.png,Infiltrate,686.101694915254,131.543498411097,185.491525423729,313.491525423729,,,\r\n"
               "00029817_009.png,Nodule,100,100,50,40,,,\r\n"   # its image in images/, as the box unpacks it
               "00030805_000.png,Mass,300,300,60,60,,,\r\n")    # its image in no folder at all
    write_file(root, "images_001/images/00013118_008.png", png_bytes(1024, 1024))
    write_file(root, "images_012/images/00014716_007.png", png_bytes(1024, 1024, seed=1))
    write_file(root, "images/00029817_009.png", png_bytes(1024, 1024, seed=2))
    write_file(root, "Data_Entry_2017.csv", "Image Index,Finding Labels\n")  # beside it, not read here
    report = curate("nih_chest_xray")
    rows = {row["id"]: row for row in kept_rows(report)}
    assert sorted(rows) == ["nih_chest_xray:00013118_008.png:Atelectasis", "nih_chest_xray:00014716_007.png:Infiltrate",
                            "nih_chest_xray:00029817_009.png:Nodule"]
    assert rows["nih_chest_xray:00014716_007.png:Infiltrate"]["boxes"][0]["x2"] == pytest.approx(871.593220338983)
    assert [(q["reason"], q["file"]) for q in quarantine(report)] == [("image_missing", "BBox_List_2017.csv")]
    assert "images/00030805_000.png" in quarantine(report)[0]["detail"]  # named where the layout looks first
    assert accounted(report)


def test_nih_vqa_reads_kaggles_data_entry_2017_beside_its_image_folders(tmp_path, curate):
    root = dataset(tmp_path, "nih_vqa")
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")  # the 2017 file: a trailing comma
    rows = ["00000001_000.png,Cardiomegaly,0,1,58,M,PA,2682,2749,0.143,0.143,",
            "00000001_001.png,Infiltration|Pleural_Thickening,1,1,58,M,PA,2894,2729,0.143,0.143,",
            "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171,"]
    write_file(root, "Data_Entry_2017.csv", "\n".join([header, *rows]) + "\n")
    write_file(root, "images_001/images/00000001_000.png", png_bytes(32, 32))
    write_file(root, "images_001/images/00000001_001.png", png_bytes(32, 32, seed=1))
    write_file(root, "images_002/images/00000002_000.png", png_bytes(32, 32, seed=2))
    report = curate("nih_vqa", "2017")
    answers = {row["id"].rsplit(":", 1)[1]: row["answer"] for row in kept_rows(report)}
    assert answers == {"00000001_000.png": "Cardiomegaly", "00000001_001.png": "Infiltration, Pleural Thickening",
                       "00000002_000.png": "No Finding"}
    assert report["quarantined"] == 0 and accounted(report)


# ---- CheXpert as Stanford AIMI ships it today: four batch zips -------------------------------------
# 'CheXpert-v1.0 batch 1 (validate & csv)' holds train.csv (Path still 'CheXpert-v1.0/train/...'),
# batches 2-4 '(train 1)' ... '(train 3)' the patient folders. Only the old CheXpert-v1.0.zip layout
# was read.

def _chexpert_row(path: str, labels: dict[str, str]) -> str:
    cells = [labels.get(name, "") for name in CHEXPERT_LABELS]
    return ",".join([path, "Female", "68", "Frontal", "AP", *cells])


def _chexpert_batches(root) -> None:
    lines = ["Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS),
             _chexpert_row("CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg",
                           {"No Finding": "1.0", "Support Devices": "1.0"}),
             _chexpert_row("CheXpert-v1.0/train/patient21514/study2/view1_frontal.jpg",
                           {"Lung Opacity": "1.0", "Edema": "-1.0"}),
             _chexpert_row("CheXpert-v1.0/train/patient43018/study1/view2_lateral.jpg", {"Cardiomegaly": "0.0"}),
             _chexpert_row("CheXpert-v1.0/train/patient64540/study1/view1_frontal.jpg", {"Fracture": "1.0"})]
    write_file(root, "CheXpert-v1.0 batch 1 (validate & csv)/train.csv", "\r\n".join(lines) + "\r\n")
    write_file(root, "CheXpert-v1.0 batch 1 (validate & csv)/valid.csv", lines[0] + "\r\n")  # not read
    write_file(root, "CheXpert-v1.0 batch 2 (train 1)/patient00001/study1/view1_frontal.jpg", jpeg_bytes())
    write_file(root, "CheXpert-v1.0 batch 3 (train 2)/patient21514/study2/view1_frontal.jpg", jpeg_bytes(seed=1))
    write_file(root, "CheXpert-v1.0 batch 4 (train 3)/patient43018/study1/view2_lateral.jpg", jpeg_bytes(seed=2))
    write_file(root, "CheXpert-v1.0 batch 4 (train 3)/patient64540/study1/view1_frontal.jpg", jpeg_bytes(seed=3))


def test_chexpert_batches_version_reads_the_aimi_download_as_unzipped(tmp_path, curate):
    root = dataset(tmp_path, "chexpert")
    _chexpert_batches(root)
    report = curate("chexpert", "batches")
    answers = {row["id"].removeprefix("chexpert:"): row["answer"] for row in kept_rows(report)}
    assert answers == {  # the ids of the v1.0 layout: the same Path
        "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg": "No Finding, Support Devices",
        "CheXpert-v1.0/train/patient21514/study2/view1_frontal.jpg": "Lung Opacity; uncertain: Edema",
        "CheXpert-v1.0/train/patient64540/study1/view1_frontal.jpg": "Fracture"}
    assert report["filtered_by_reason"] == {"no_positive_label": 1} and report["quarantined"] == 0
    assert accounted(report)


def test_chexpert_batches_read_as_the_default_layout_stop_naming_the_version_to_pick(tmp_path, curate):
    _chexpert_batches(dataset(tmp_path, "chexpert"))
    with pytest.raises(SourceUnavailable) as stopped:
        curate("chexpert")
    message = str(stopped.value)
    assert "'chexpert'" in message and "CheXpert-v1.0/train.csv is missing" in message
    assert "corpus.registry.versions.chexpert (small, batches)" in message
    assert not (tmp_path / "corpus").exists() or not any((tmp_path / "corpus").rglob("*.parquet"))


# ---- IU-Xray: a report row without its uid ---------------------------------------------------------
# A blank uid was numbered by the row's place in the file (a study "1" that does not exist, or the
# duplicate of a real uid) and joined to the projections of blank uid: a report kept with another
# row's images. Both rows are now missing_field, by their own file and row.

def test_iu_xray_rows_without_a_uid_are_missing_field_not_numbered_by_place(tmp_path, curate):
    root = dataset(tmp_path, "iu_xray")
    write_file(root, "indiana_reports.csv",
               "uid,MeSH,Problems,image,indication,comparison,findings,impression\r\n"
               "7,normal,normal,Xray Chest PA and Lateral,Cough.,None.,The lungs are clear.,Normal chest.\r\n"
               ",Cardiomegaly,Cardiomegaly,Xray Chest PA,Dyspnea.,None.,The heart is enlarged.,Cardiomegaly.\r\n")
    write_file(root, "indiana_projections.csv", "uid,filename,projection\r\n"
               "7,7_IM-0001-4001.dcm.png,Frontal\r\n,3899_IM-1985-1001.dcm.png,Frontal\r\n")
    for seed, name in enumerate(["7_IM-0001-4001.dcm.png", "3899_IM-1985-1001.dcm.png"]):
        write_file(root, f"images/images_normalized/{name}", png_bytes(seed=seed))
    report = curate("iu_xray")
    assert [row["id"] for row in kept_rows(report)] == ["iu_xray:7"]
    assert sorted((q["reason"], q["file"], q["record"]) for q in quarantine(report)) == [
        ("missing_field", "indiana_projections.csv", "row 2"), ("missing_field", "indiana_reports.csv", "row 2")]
    assert accounted(report)


# ---- DeepLesion: a bad Train_Val_Test cell --------------------------------------------------------
# The slice's subset was read from its first CSV row after grouping: a bad cell there quarantined the
# whole slice, its good lesions too, named by the slice instead of the row.

def _air_slices(root, *paths: str) -> None:
    """DeepLesion slices of air (-1000 HU), 16-bit PNGs with the release's 32768 offset."""
    for path in paths:
        write_file(root, path, png16_bytes(np.full((64, 64), -1000 + 32768, dtype=np.int32)))


def test_deeplesion_a_bad_train_val_test_costs_its_own_row_only(tmp_path, curate):
    root = dataset(tmp_path, "deeplesion")
    _air_slices(root, "Images_png/000001_01_01/103.png", "Images_png/000002_01_01/010.png")
    base = ["000001_01_01_103.png", 1, 1, 1, 103, "233.6, 95.1, 248.3, 110.5", "16.5, 16.5, 39.5, 39.5", "23.6, 16.1",
            "0.4, 0.2, 0.5", 4, 0, "98, 108", "0.8, 0.8, 5", "64, 64", "-175, 275", "F", 51, "train"]
    good = [*base[:6], "20, 20, 30, 30", *base[7:-1], 1]
    other = ["000002_01_01_010.png", *base[1:-1], 7]  # a subset the release does not have
    test_set = ["000002_01_01_010.png", *base[1:6], "2, 3, 10, 12", *base[7:-1], 3]
    with open(root / "DL_info.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DL_COLUMNS)
        writer.writerows([base, good, other, test_set])
    report = curate("deeplesion")
    rows = {row["id"]: row for row in kept_rows(report)}
    assert sorted(rows) == ["deeplesion:000001_01_01_103:liver lesion", "deeplesion:000002_01_01_010:liver lesion"]
    assert [(b["x1"], b["x2"]) for b in rows["deeplesion:000001_01_01_103:liver lesion"]["boxes"]] == [(20.0, 30.0)]
    assert rows["deeplesion:000002_01_01_010:liver lesion"]["split"] == "eval"  # its own row's subset, 3
    assert sorted((q["reason"], q["file"], q["record"]) for q in quarantine(report)) == [
        ("bad_number", "DL_info.csv", "row 1"), ("bad_number", "DL_info.csv", "row 3")]
    assert accounted(report)


# ---- a box list none of whose images is found: the message says where they are -------------------
# DeepLesion's Images_png_NN.zip unzipped into a folder of its own name (Images_png/Images_png/...).
# The hint naming the file found elsewhere came only for rows that carry their image, never for box
# lists, whose missing image is a quarantine record: the message named no path at all.

def test_deeplesion_slices_unzipped_one_folder_too_deep_are_named_in_the_stop_message(tmp_path, curate):
    root = dataset(tmp_path, "deeplesion")
    _air_slices(root, "Images_png/Images_png/000001_01_01/103.png")
    row = ["000001_01_01_103.png", 1, 1, 1, 103, "", "16.5, 16.5, 39.5, 39.5", "", "", 4, 0, "98, 108",
           "0.8, 0.8, 5", "64, 64", "-175, 275", "F", 51, 1]
    with open(root / "DL_info.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DL_COLUMNS)
        writer.writerow(row)
    with pytest.raises(SourceUnavailable) as stopped:
        curate("deeplesion")
    message = str(stopped.value)
    assert "'deeplesion'" in message and "none of its 1 records found its image file" in message
    assert "Images_png/000001_01_01/103.png, is not there, but Images_png/Images_png/000001_01_01/103.png is" \
        in message


# ---- VQA-RAD: answer types and answers as the OSF JSON writes them ---------------------------------

def test_vqa_rad_closed_answers_in_any_case_and_a_count_answer_stored_as_a_number(tmp_path, curate):
    import json

    root = dataset(tmp_path, "vqa_rad")
    common = {"image_name": "synpic54610.jpg", "image_organ": "HEAD", "phrase_type": "freeform",
              "question_type": "PRES", "image_case_url": "https://medpix.nlm.nih.gov/case?id=48e1dd0e"}
    records = [{**common, "qid": 0, "question": "Are regions of the brain infarcted?", "answer": "Yes",
                "answer_type": "CLOSED"},
               {**common, "qid": 1, "question": "Is the lesion normal?", "answer": "no ", "answer_type": "CLOSED "},
               {**common, "qid": 2, "question": "How many lesions are there?", "answer": 2, "answer_type": "OPEN"},
               {**common, "qid": 3, "question": "Which side is the lesion on?", "answer": "Left", "answer_type": "OPEN"},
               {**common, "qid": 4, "question": "Is this an MRI?", "answer": None, "answer_type": "CLOSED"}]
    write_file(root, "VQA_RAD Dataset Public.json", json.dumps(records, indent=4))
    write_file(root, "VQA_RAD Image Folder/synpic54610.jpg", jpeg_bytes())
    report = curate("vqa_rad")
    kept = {row["id"]: (row["answer"], row["choices"]) for row in kept_rows(report)}
    assert kept == {"vqa_rad:0": ("yes", ["yes", "no"]), "vqa_rad:1": ("no", ["yes", "no"]),
                    "vqa_rad:2": ("2", []), "vqa_rad:3": ("Left", [])}
    assert [(q["reason"], q["file"]) for q in quarantine(report)] == [("missing_answer", "VQA_RAD Dataset Public.json")]
    assert accounted(report)
