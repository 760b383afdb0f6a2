"""Round 5a of reading releases exactly as their publishers ship them: quirks of PMC-VQA, PathVQA,
CT-RATE and MedSG-188K rows as their published files hold them (spaces around option letters, CRLF
line ends, quoted fields holding commas and line breaks, answers in any case), each curated through
its registry entry and checked for what is kept, quarantined (reason, file, row) and filtered."""
# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.parquet as pq
from fixtures_formats import jpeg_bytes, png_bytes, write_file
from test_published_layouts import accounted, curate, dataset, kept_rows, quarantine  # noqa: F401 - curate: the fixture


def _csv_crlf(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# ---- PMC-VQA v1 (huggingface.co/datasets/xmcmic/PMC-VQA train.csv) --------------------------------
# Public converters (e.g. convert_pmc_vqa_to_easyr1.py) strip whitespace, quotes, NBSP and U+200A
# around every choice and Answer_label: the file holds ' B:Focal uptake pattern ' and ' B'.


def test_pmc_vqa_v1_choices_with_spaces_around_their_letter_and_a_spaced_answer_label(tmp_path, curate):
    root = dataset(tmp_path, "pmc_vqa")
    header = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]
    rows = [["PMC1064097_F1.jpg", " What is the uptake pattern, as shown, in the breast? ", "Focal uptake pattern ",
             " A:Diffuse uptake pattern ", " B:Focal uptake pattern ", " C:No uptake pattern ",
             " D:Cannot determine\xa0", " B"],
            ["PMC1064097_F2.jpg", "Which view is shown?", "Axial", " A:Axial ", " B:Coronal ", " C:Sagittal ",
             " D:Oblique ", "E"]]  # a label naming no option: that row's problem, not the file's
    write_file(root, "train.csv", _csv_crlf(header, rows))
    write_file(root, "images/PMC1064097_F1.jpg", jpeg_bytes())
    write_file(root, "images/PMC1064097_F2.jpg", jpeg_bytes(seed=1))
    report = curate("pmc_vqa", "v1")
    (row,) = kept_rows(report)
    assert row["choices"] == ["Diffuse uptake pattern", "Focal uptake pattern", "No uptake pattern", "Cannot determine"]
    assert row["answer"] == "B"
    assert row["messages"][0]["content"].count("What is the uptake pattern, as shown, in the breast?") == 1
    assert [(q["reason"], q["file"], q["record"]) for q in quarantine(report)] == [
        ("malformed_record", "train.csv", "row 2")]
    assert accounted(report)


# ---- PathVQA (huggingface.co/datasets/flaviagiammarino/path-vqa data/train-*.parquet) -------------
# The card: closed answers "yes" / "no", open answers free text; rows of one image repeat its bytes.


def test_pathvqa_closed_answers_in_any_case_and_open_answers_kept_as_written(tmp_path, curate):
    root = dataset(tmp_path, "pathvqa")
    image = {"bytes": jpeg_bytes(seed=2), "path": None}
    table = pa.Table.from_pylist([
        {"image": image, "question": "Are the cells arranged in cords?", "answer": "Yes"},
        {"image": image, "question": "Is this an H&E stain?", "answer": "no "},
        {"image": image, "question": "What is present?", "answer": "Hepatocellular carcinoma"},
        {"image": image, "question": "What does this image show?", "answer": ""}])
    (root / "data").mkdir(parents=True)
    pq.write_table(table, root / "data" / "train-00000-of-00003-61a4ae7e4e2f8c8c.parquet")
    report = curate("pathvqa")
    answers = sorted(row["messages"][-1]["content"] for row in kept_rows(report))
    assert answers == ["Hepatocellular carcinoma", "no", "yes"]
    assert [(q["reason"], q["record"]) for q in quarantine(report)] == [("missing_answer", "row 4")]
    assert accounted(report)


# ---- CT-RATE (huggingface.co/datasets/ibrahimhamamci/CT-RATE train_reports.csv) -------------------
# Reports are quoted fields holding commas and line breaks; the file as saved on Windows ends lines
# in CRLF.


def test_ct_rate_reports_with_crlf_and_quoted_line_breaks_keep_each_report_whole(tmp_path, curate):
    root = dataset(tmp_path, "ct_rate")
    header = ["VolumeName", "ClinicalInformation_EN", "Technique_EN", "Findings_EN", "Impressions_EN"]
    rows = [["train_1_a_1.nii.gz", "Not given.", "Non-contrast axial images.",
             "Trachea, both main bronchi are open.\nNo pleural effusion.", "No acute findings. "],
            ["train_1_a_2.nii.gz", "Not given.", "Non-contrast axial images.", "", ""]]
    write_file(root, "dataset/radiology_text_reports/train_reports.csv", _csv_crlf(header, rows))
    write_file(root, "slices/train_1_a_1.png", png_bytes())
    write_file(root, "slices/train_1_a_2.png", png_bytes(seed=1))
    report = curate("ct_rate")
    (row,) = kept_rows(report)
    assert row["messages"][-1]["content"] == ("Findings: Trachea, both main bronchi are open.\nNo pleural effusion.\n"
                                              "Impression: No acute findings.")
    assert report["rows_in"] == 2 and accounted(report)
    assert [(q["reason"], q["file"], q["record"]) for q in quarantine(report)] == [  # row 2 of the file, not line 3
        ("missing_answer", "dataset/radiology_text_reports/train_reports.csv", "row 2")]
