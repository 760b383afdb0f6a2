"""Rows copied from what the publishers (or the loaders that quote them) show, curated through the
registry entries the corpus job reads: every real row is kept, with the question, answer, boxes and
split the publisher meant. Each fixture names where its rows were copied from."""

# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)
from __future__ import annotations

import csv
import io
import json

import numpy as np
from fixtures_formats import jpeg_bytes, png16_bytes, write_file
from test_published_layouts import (
    accounted,
    curate,  # noqa: F401 (a fixture: tests name it as a parameter)
    dataset,
    kept_rows,
)

# ---- SLAKE --------------------------------------------------------------------------------------
# train.json records as the SLAKE homepage (www.med-vqa.com/slake) shows them, quoted verbatim in public
# SLAKE loaders and dataset READMEs (the xmlab1 record in a README linking github.com/openmedlab, the
# xmlab102 and xmlab384 ones in loader comments); huggingface.co/datasets/BoKelvin/SLAKE train.json has
# the same keys. The first has qid 0. (The repositories quoting them were not identified.)
SLAKE_RECORDS = [
    {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "What modality is used to take this image?",
     "answer": "MRI", "q_lang": "en", "location": "Abdomen", "modality": "MRI", "answer_type": "OPEN",
     "base_type": "vqa", "content_type": "Modality", "triple": ["vhead", "_", "_"], "qid": 0},
    {"img_id": 102, "img_name": "xmlab102/source.jpg", "question": "What modality is used to take this image?",
     "answer": "CT", "q_lang": "en", "location": "Lung", "modality": "CT", "answer_type": "OPEN",
     "base_type": "vqa", "triple": ["vhead", "_", "_"], "qid": 11934, "content_type": "Modality"},
    {"img_id": 384, "img_name": "xmlab384/source.jpg", "question": "What scanning plane does this image belong to?",
     "answer": "Coronal Plane", "q_lang": "en", "location": "Lung", "modality": "X-Ray", "answer_type": "OPEN",
     "base_type": "vqa", "content_type": "Plane", "triple": ["vhead", "_", "_"], "qid": 2725},
]


def test_slake_homepage_records_and_detection_boxes_in_their_xywh_frame(tmp_path, curate):
    root = dataset(tmp_path, "slake")
    write_file(root, "train.json", json.dumps(SLAKE_RECORDS, indent=4, ensure_ascii=False))
    for number in (1, 102, 384):
        write_file(root, f"imgs/xmlab{number}/source.jpg", jpeg_bytes(width=64, height=48, seed=number))
    # detection.json: a list of {organ: [x, y, w, h]} in pixels, as SLAKE evaluation scripts read it
    # (the Ovis SLAKE eval draws (box[0], box[1], box[0] + box[2], box[1] + box[3])); the numbers are ours
    write_file(root, "imgs/xmlab1/detection.json", json.dumps([{"Liver": [10, 12, 20, 16]}, {"Spleen": [40, 8, 6, 9]}]))
    write_file(root, "imgs/xmlab102/detection.json", json.dumps([{"Left Lung": [5, 6, 20, 30]}]))
    write_file(root, "imgs/xmlab384/detection.json", json.dumps([]))  # an image with no boxes
    report = curate("slake")
    rows = {row["id"]: row for row in kept_rows(report)}
    assert {i: (r["messages"][0]["content"], r["answer"]) for i, r in rows.items() if "box_json" not in i} == {
        "slake:0": ("What modality is used to take this image?", "MRI"),  # qid 0 is an id, not a missing one
        "slake:11934": ("What modality is used to take this image?", "CT"),
        "slake:2725": ("What scanning plane does this image belong to?", "Coronal Plane")}
    assert all(rows[i]["choices"] == [] for i in ("slake:0", "slake:11934", "slake:2725"))  # OPEN: no choices
    boxes = {i: [(b["label"], b["x1"], b["y1"], b["x2"], b["y2"]) for b in r["boxes"]]
             for i, r in rows.items() if "box_json" in i}
    assert boxes == {"slake:box_json_per_image/xmlab1:Liver": [("Liver", 10, 12, 30, 28)],
                     "slake:box_json_per_image/xmlab1:Spleen": [("Spleen", 40, 8, 46, 17)],
                     "slake:box_json_per_image/xmlab102:Left Lung": [("Left Lung", 5, 6, 25, 36)]}
    assert report["quarantined"] == 0 and accounted(report)


# ---- VQA-RAD ------------------------------------------------------------------------------------
# Records of osf.io/89kps "VQA_RAD Dataset Public.json" as public VQA-RAD loaders quote them in comments
# and a README ("Trainset.json" of the data_RAD split keeps the release's keys; repositories not
# identified): qid an integer, answers "Yes" (CLOSED) or free text.
VQA_RAD_RECORDS = [
    {"qid": 1, "image_name": "synpic54610.jpg", "image_organ": "HEAD", "answer": "Yes", "answer_type": "CLOSED",
     "question_type": "PRES", "question": "Are regions of the brain infarcted?", "phrase_type": "freeform"},
    {"qid": 676, "image_name": "synpic31955.jpg", "image_organ": "CHEST", "answer": "Right lung hilum",
     "answer_type": "OPEN", "question_type": "POS", "question": "Where is/are the lesion located?",
     "phrase_type": "frame"},
]


def test_vqa_rad_public_json_records(tmp_path, curate):
    root = dataset(tmp_path, "vqa_rad")
    write_file(root, "VQA_RAD Dataset Public.json", json.dumps(VQA_RAD_RECORDS, indent=4))
    for seed, record in enumerate(VQA_RAD_RECORDS):
        write_file(root, f"VQA_RAD Image Folder/{record['image_name']}", jpeg_bytes(seed=seed))
    report = curate("vqa_rad")
    rows = {row["id"]: row for row in kept_rows(report)}
    assert {i: (r["messages"][0]["content"], r["answer"], r["choices"]) for i, r in rows.items()} == {
        "vqa_rad:1": ("Are regions of the brain infarcted?", "yes", ["yes", "no"]),
        "vqa_rad:676": ("Where is/are the lesion located?", "Right lung hilum", [])}
    assert report["quarantined"] == 0 and accounted(report)


# ---- DeepLesion ---------------------------------------------------------------------------------
# DL_info.csv rows as tensorflow/datasets tensorflow_datasets/testing/deeplesion.py (fake_DL_info.csv)
# copies them from the release: the header, quoted "x1, y1, x2, y2" boxes, Coarse_lesion_type -1 for an
# unlabelled lesion, Train_Val_Test 1/2/3, "rows, cols" image sizes and "low, high" windows.
DL_INFO = [
    ["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index", "Measurement_coordinates",
     "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location", "Coarse_lesion_type",
     "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender",
     "Patient_age", "Train_Val_Test"],
    ["000001_01_01_000.png", 1, 1, 1, 0, "233.537, 95.0204, 234.057, 106.977, 231.169, 101.605, 236.252, 101.143",
     "226.169, 90.0204, 241.252, 111.977", "11.9677, 5.10387", "0.44666, 0.283794, 0.434454", 3, 0, "103, 115",
     "0.488281, 0.488281, 5", "512, 512", "-175, 275", "F", 62, 1],
    ["000002_01_01_000.png", 2, 1, 1, 0, "238.314, 261.228, 235.858, 268.594, 240.36, 265.729, 234.222, 262.865",
     "229.222, 256.228, 245.36, 273.594", "7.76388, 6.77335", "0.437715, 0.573812, 0.609054", 2, 0, "156, 168",
     "0.859375, 0.859375, 5", "512, 512", "-175, 275", "F", 51, 2],
    ["000003_01_01_002.png", 3, 1, 1, 2, "357.938, 289.428, 364.226, 314.912, 367.536, 300.35, 350.988, 305.976",
     "345.988, 284.428, 372.536, 319.912", "26.2489, 17.4787", "0.69148, 0.624435, 0.616547", -1, 0, "4, 28",
     "0.488281, 0.488281, 2.5", "512, 512", "-175, 275", "F", 19, 3],
]


def test_deeplesion_dl_info_rows_boxes_labels_and_splits(tmp_path, curate):
    root = dataset(tmp_path, "deeplesion")
    buffer = io.StringIO()
    csv.writer(buffer).writerows(DL_INFO)
    write_file(root, "DL_info.csv", buffer.getvalue())
    for folder, slice_name in (("000001_01_01", "000"), ("000002_01_01", "000"), ("000003_01_01", "002")):
        write_file(root, f"Images_png/{folder}/{slice_name}.png",
                   png16_bytes(np.full((512, 512), 32768 + 40, dtype=np.uint16)))
    report = curate("deeplesion")
    rows = {row["id"]: row for row in kept_rows(report)}
    boxes = {i: [(b["label"], b["x1"], b["y1"], b["x2"], b["y2"]) for b in r["boxes"]] for i, r in rows.items()}
    assert boxes == {  # pixels of the 512 x 512 slice, as the CSV writes them
        "deeplesion:000001_01_01_000:mediastinum lesion": [("mediastinum lesion", 226.169, 90.0204, 241.252, 111.977)],
        "deeplesion:000002_01_01_000:abdomen lesion": [("abdomen lesion", 229.222, 256.228, 245.36, 273.594)],
        "deeplesion:000003_01_01_002:lesion": [("lesion", 345.988, 284.428, 372.536, 319.912)]}  # type -1
    assert {i: r["split"] for i, r in rows.items()} == {
        "deeplesion:000001_01_01_000:mediastinum lesion": "train", "deeplesion:000002_01_01_000:abdomen lesion": "train",
        "deeplesion:000003_01_01_002:lesion": "eval"}  # Train_Val_Test 3 is the test set
    assert report["quarantined"] == 0 and accounted(report)
