"""Rows built from a publisher's labels say what those labels mean: an uncertain CheXpert label is
said to be uncertain (a finding list that leaves it out claims it absent), ChestX-ray14's
``Pleural_Thickening`` is written as words, and an image folder's name is read as a class only where
it is one (not a split folder "train", not a bare class index "0", without a sorting number "0_")."""

# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)
from __future__ import annotations

import pytest
from fixtures_formats import jpeg_bytes, png_bytes, write_file
from test_published_layouts import (
    accounted,
    curate,  # noqa: F401 (a fixture: tests name it as a parameter)
    dataset,
    kept_rows,
    quarantine,
)

from medmo_pipeline.data.adapters import iter_samples
from medmo_pipeline.data.adapters.image_folder import folder_label
from medmo_pipeline.data.outcomes import RowError

# ---- CheXpert train.csv: -1.0 is uncertain, neither present nor absent ---------------------------

# The header and the first two rows of CheXpert-v1.0-small/train.csv as public loaders quote them
# (e.g. the CheXpert competition starter scripts: "patient00001/study1/view1_frontal.jpg,Female,68,
# Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0" and "patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,
# -1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,"); the third is a row of uncertain labels only, in that format.
CHEXPERT_HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
                   "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
                   "Pleural Effusion,Pleural Other,Fracture,Support Devices")
CHEXPERT_ROWS = [
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    ("CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,"
     "-1.0,,-1.0,,1.0,"),
    "CheXpert-v1.0-small/train/patient00004/study1/view1_frontal.jpg,Female,20,Frontal,PA,,,,,,-1.0,,-1.0,,,,,,",
]


def _chexpert(root):
    write_file(root, "CheXpert-v1.0-small/train.csv", "\n".join([CHEXPERT_HEADER, *CHEXPERT_ROWS]) + "\n")
    for number, row in enumerate(CHEXPERT_ROWS):
        write_file(root, row.split(",")[0], jpeg_bytes(seed=number))


def test_chexpert_uncertain_labels_are_said_to_be_uncertain(tmp_path, curate):
    """Before: patient00002 read "Lung Opacity, Fracture" (its five -1.0 findings read as absent, the
    U-Zeros policy unsaid) and patient00004, all uncertain, was filtered as having no positive label."""
    _chexpert(dataset(tmp_path, "chexpert"))
    report = curate("chexpert", "small")
    answers = {row["id"].split("/train/")[1]: row["answer"] for row in kept_rows(report)}
    assert answers == {
        "patient00001/study1/view1_frontal.jpg": "No Finding, Support Devices",  # 0.0 Pneumothorax: absent
        "patient00002/study2/view1_frontal.jpg":
            "Lung Opacity, Fracture; uncertain: Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion",
        "patient00004/study1/view1_frontal.jpg": "Uncertain: Edema, Pneumonia"}
    assert not report["filtered_by_reason"] and not quarantine(report) and accounted(report)


def test_chexpert_u_ones_stays_an_explicit_choice(tmp_path):
    """``uncertain: positive`` (U-Ones) counts -1.0 as present; the old silent "omit" is refused."""
    _chexpert(tmp_path)
    rows = list(iter_samples("label_csv", tmp_path, {"file": "CheXpert-v1.0-small/train.csv", "uncertain": "positive"}))
    assert rows[1]["answer"] == "Cardiomegaly, Lung Opacity, Edema, Consolidation, Atelectasis, Pleural Effusion, Fracture"
    with pytest.raises(ValueError, match="uncertain"):
        list(iter_samples("label_csv", tmp_path, {"file": "CheXpert-v1.0-small/train.csv", "uncertain": "omit"}))


def test_chexpert_rows_without_positive_or_uncertain_labels_are_counted(tmp_path, curate):
    root = dataset(tmp_path, "chexpert")
    rows = [*CHEXPERT_ROWS[:1],
            "CheXpert-v1.0-small/train/patient00005/study1/view1_frontal.jpg,Male,33,Frontal,PA,,,0.0,,,0.0,,,,,,,,"]
    write_file(root, "CheXpert-v1.0-small/train.csv", "\n".join([CHEXPERT_HEADER, *rows]) + "\n")
    for number, row in enumerate(rows):
        write_file(root, row.split(",")[0], jpeg_bytes(seed=number))
    report = curate("chexpert", "small")
    assert len(kept_rows(report)) == 1
    assert report["filtered_by_reason"] == {"no_positive_label": 1} and accounted(report)


# ---- ChestX-ray14 Data_Entry csv: label names as words ---------------------------------------------

# Header as the nih_vqa registry entry quotes Data_Entry_2017_v2020.csv; the finding names are the
# 14 of README_ChestXray.pdf (nihcc.app.box.com/v/ChestXray-NIHCC), spelt "Pleural_Thickening" there
# and in the csv (as torchxrayvision's default_pathologies keep it). The rows follow that format; their
# metadata values are not re-read from the NIH file.
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
NIH_ROWS = ["00000013_005.png,Emphysema|Infiltration|Pleural_Thickening|Pneumothorax,5,13,60,M,AP,3056,2544,0.139,0.139",
            "00000032_001.png,Cardiomegaly|Edema|Effusion,1,32,55,F,AP,2500,2048,0.168,0.168",
            "00000076_000.png,No Finding,0,76,47,M,PA,2992,2991,0.143,0.143"]


def test_chestxray14_underscored_labels_are_written_as_words(tmp_path, curate):
    """Before: "Emphysema, Infiltration, Pleural_Thickening, Pneumothorax" (the file's spelling)."""
    root = dataset(tmp_path, "nih_vqa")
    write_file(root, "Data_Entry_2017_v2020.csv", "\n".join([NIH_HEADER, *NIH_ROWS]) + "\n")
    for number, row in enumerate(NIH_ROWS):
        write_file(root, f"images/{row.split(',')[0]}", png_bytes(32, 32, seed=number))
    report = curate("nih_vqa")
    answers = {row["id"].rsplit(":", 1)[1]: row["answer"] for row in kept_rows(report)}
    assert answers == {"00000013_005.png": "Emphysema, Infiltration, Pleural Thickening, Pneumothorax",
                       "00000032_001.png": "Cardiomegaly, Edema, Effusion", "00000076_000.png": "No Finding"}
    assert not report["filtered_by_reason"] and accounted(report)


# ---- image folders: the class is the folder's name, read as a class -------------------------------

def test_folder_names_read_as_class_names():
    assert folder_label("0_normal/a.png") == "normal"  # a sorting number is not part of the class
    assert folder_label("1-benign/slide3/a.png") == "benign"
    assert folder_label("PNEUMONIA/person1_bacteria_1.jpeg") == "PNEUMONIA"  # case kept (CNV, DME are acronyms)
    assert folder_label("grade_2_tumour/a.png") == "grade 2 tumour"  # only a leading number goes
    assert folder_label("0/a.png", {"0": "normal"}) == "normal"


@pytest.mark.parametrize("relative", ["train/NORMAL/IM-0115-0001.jpeg", "test/PNEUMONIA/person1_virus_6.jpeg",
                                      "val/a.png", "0/a.png"])
def test_split_folders_and_bare_class_indices_are_no_class(relative):
    """Before: the Kaggle chest_xray tree read one level too high answered "train" (and its test/
    images trained); a class-index folder answered "0"."""
    with pytest.raises(RowError) as raised:
        folder_label(relative)
    assert raised.value.reason == "missing_field"


def test_a_split_folder_by_mistake_is_quarantined_and_counted(tmp_path, curate):
    """chest_xray/{train,test}/{NORMAL,PNEUMONIA} (the Kaggle "Chest X-Ray Images (Pneumonia)" tree)
    mirrored into images/ one level too high: every image is quarantined, none answers "train"."""
    root = dataset(tmp_path, "cpd")
    write_file(root, "images/train/NORMAL/IM-0115-0001.jpeg", jpeg_bytes(seed=1))
    write_file(root, "images/test/PNEUMONIA/person1_virus_6.jpeg", jpeg_bytes(seed=2))
    write_file(root, "images/0_normal/IM-0117-0001.jpeg", jpeg_bytes(seed=3))
    report = curate("cpd")
    assert [row["answer"] for row in kept_rows(report)] == ["normal"]
    assert sorted(q["reason"] for q in quarantine(report)) == ["missing_field", "missing_field"]
    assert accounted(report)
