"""The defects found by reading small copies laid out exactly as the publishers ship them: each
test writes the public layout (real file and column names, header quirks, line endings) and curates
it the way the corpus job does (``curate_source`` through the registry)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fixtures_formats import jpeg_bytes, png_bytes, write_file, write_mimic_split
from PIL import Image

from medmo_pipeline.config import CorpusRecipe
from medmo_pipeline.data import shards
from medmo_pipeline.data.build import source_checks, source_metadata
from medmo_pipeline.data.registry import SourceUnavailable, load_registry
from medmo_pipeline.data.sources import curate_source

REGISTRY = load_registry()
CREDENTIALS = ("PHYSIONET_USERNAME", "STANFORD_AIMI_AGREEMENT", "HF_TOKEN")


@pytest.fixture
def curate(tmp_path, monkeypatch):
    """curate_source for one registry dataset under tmp_path/data (credentials attested)."""
    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    for variable in CREDENTIALS:
        monkeypatch.setenv(variable, "attested-for-the-test")

    def run(name: str, version: str = "", **corpus_fields) -> dict:
        corpus = CorpusRecipe(kind="registry", registry={
            "data_root": str(tmp_path / "data"), "sources": [name], **({"versions": {name: version}} if version else {})},
            **corpus_fields)
        return curate_source(corpus, name, tmp_path / "corpus", seed=0, log=lambda _: None)

    return run


def dataset(tmp_path: Path, name: str) -> Path:
    return tmp_path / "data" / REGISTRY.get(name).origin.local_dir


def kept_rows(report: dict) -> list[dict]:
    return list(shards.iter_rows(Path(report["shard_dir"])))


def quarantine(report: dict) -> list[dict]:
    return pq.read_table(report["quarantine_path"]).to_pylist()


def accounted(report: dict) -> bool:
    return report["accounted"] and report["rows_in"] == report["rows_kept"] + report["quarantined"] + report["filtered"]


# ---- MIMIC-CXR: combined and missing headings ---------------------------------------------------

MIMIC_REPORTS = {
    "s50000001": " FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___ with cough\n \n"
                 " FINDINGS:\n \n Lungs are clear.\n \n IMPRESSION:\n \n No acute process.\n",
    "s50000002": " FINAL REPORT\n INDICATION:  Fever.\n \n FINDINGS AND IMPRESSION:  Heart size is normal.  No effusion.\n",
    "s50000003": " FINAL REPORT\n COMPARISON:  ___.\n \n PA and lateral views of the chest.  The lungs are clear.\n",
    "s50000004": " FINAL REPORT\n findings: mild cardiomegaly. conclusion: no pneumonia.\n",
    # the body in a paragraph of its own, under no heading, before the impression
    "s50000005": " FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n INDICATION:  ___ with cough\n \n"
                 " COMPARISON:  None.\n \n PA and lateral views of the chest were obtained.  The lungs are clear.\n"
                 " \n IMPRESSION:  No acute cardiopulmonary process.\n",
    "s50000006": " FINAL REPORT\n FINDINGS:  6 mm nodule.\n \n IMPRESSION:  Small nodule.\n \n"
                 " RECOMMENDATION(S):  Chest CT in 3 months.\n",
}


def test_mimic_cxr_reports_with_combined_or_no_headings_are_kept(tmp_path, curate):
    root = dataset(tmp_path, "mimic_cxr")
    for study, report in MIMIC_REPORTS.items():
        write_file(root, f"files/p10/p10000032/{study}.txt", report)
        write_file(root, f"files/p10/p10000032/{study}/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg",
                   jpeg_bytes(seed=int(study[-1])))
    write_mimic_split(root)  # mimic-cxr-2.0.0-split.csv.gz: every study in train
    report = curate("mimic_cxr")
    replies = {row["id"].rsplit("/", 1)[1]: row["messages"][1]["content"] for row in kept_rows(report)}
    assert replies == {
        "s50000001": "Findings: Lungs are clear.\nImpression: No acute process.",
        "s50000002": "Findings and impression: Heart size is normal. No effusion.",
        "s50000003": "Report: PA and lateral views of the chest. The lungs are clear.",
        "s50000004": "Findings: mild cardiomegaly.\nConclusion: no pneumonia.",
        "s50000005": "Report: PA and lateral views of the chest were obtained. The lungs are clear.\n"
                     "Impression: No acute cardiopulmonary process.",
        "s50000006": "Findings: 6 mm nodule.\nImpression: Small nodule.",
    }
    assert report["quarantined"] == 0 and accounted(report)


# ---- boxes: one non-finite coordinate -----------------------------------------------------------

def _blank_png(size: int = 1024) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((size, size), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_non_finite_box_coordinate_quarantines_its_row_naming_file_and_row(tmp_path, curate):
    root = dataset(tmp_path, "nih_chest_xray")
    lines = ["Image Index,Finding Label,Bbox [x,y,w,h],,,",  # the published header: four box columns, three unnamed
             "00013118_008.png,Atelectasis,225.084745762712,547.019216763771,86.7796610169491,79.1864406779661,,,",
             "00014716_007.png,Atelectasis,686.101694915254,inf,185.491525423729,313.491525423729,,,",
             "00014716_007.png,Nodule,100,100,50,40,,,",
             "00029817_009.png,Infiltrate,nan,1e400,20,20,,,",
             "00030805_000.png,No Finding,nan,nan,nan,nan,,,"]  # a negative image, as box lists write it
    write_file(root, "BBox_List_2017.csv", "\r\n".join(lines) + "\r\n")
    for name in ("00013118_008.png", "00014716_007.png", "00029817_009.png"):
        write_file(root, f"images/{name}", _blank_png())
    report = curate("nih_chest_xray")
    assert sorted(row["id"] for row in kept_rows(report)) == [
        "nih_chest_xray:00013118_008.png:Atelectasis", "nih_chest_xray:00014716_007.png:Nodule"]
    problems = sorted((q["file"], q["record"], q["reason"]) for q in quarantine(report))
    assert problems == [("BBox_List_2017.csv", "row 2", "box_nan"), ("BBox_List_2017.csv", "row 4", "box_nan")]
    assert report["filtered_by_reason"] == {"no_finding": 1} and accounted(report)


# ---- PMC-VQA: v2 columns (default) and v1, option prefixes --------------------------------------

def _pmc_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)  # pandas' to_csv quoting: fields with commas or newlines in quotes
        writer.writerow(header)
        writer.writerows(rows)


CHOICES = ["A:Diffuse uptake pattern", "B:Focal uptake pattern", "C:No uptake pattern",
           "D:Cannot determine from the information given, sadly"]


@pytest.mark.parametrize("version", ["", "v1"])
def test_pmc_vqa_versions_read_their_columns_and_options_are_lettered_once(tmp_path, curate, version):
    root = dataset(tmp_path, "pmc_vqa")
    if version == "v1":
        folder = "images"
        _pmc_csv(root / "train.csv", ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C",
                                      "Choice D", "Answer_label"],
                 [["PMC1064097_F1.jpg", "What is the uptake pattern\nin the breast?", "Focal uptake pattern",
                   *CHOICES, "B"]])
    else:
        folder = "figures"
        _pmc_csv(root / "train_2.csv", ["index", "Figure_path", "Caption", "Question", "Choice A", "Choice B",
                                        "Choice C", "Choice D", "Answer", "split"],
                 [["0", "PMC1064097_F1.jpg", "Figure 1, a PET scan.", "What is the uptake pattern\nin the breast?",
                   *(f" {choice}" for choice in CHOICES), "B", "train"]])
    write_file(root, f"{folder}/PMC1064097_F1.jpg", jpeg_bytes())
    report = curate("pmc_vqa", version)
    (row,) = kept_rows(report)
    assert row["choices"] == ["Diffuse uptake pattern", "Focal uptake pattern", "No uptake pattern",
                              "Cannot determine from the information given, sadly"]
    assert row["answer"] == "B"
    assert "\nA. Diffuse uptake pattern\nB. Focal uptake pattern\n" in row["messages"][0]["content"]
    assert "A:" not in row["messages"][0]["content"]


def test_a_file_whose_header_lacks_a_column_the_layout_reads_stops_its_source_naming_both(tmp_path, curate):
    """PMC-VQA's v1 columns under the v2 file name (a re-export): every row would lose its answer.
    CheXpert Plus without its split column: every row would be filtered. Each stops its partition,
    naming the missing column, the columns the file has and where to look; nothing is published."""
    root = dataset(tmp_path, "pmc_vqa")
    _pmc_csv(root / "train_2.csv", ["Figure_path", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
                                    "Answer_label"], [["PMC1064097_F1.jpg", "What is it?", *CHOICES, "B"]])
    write_file(root, "figures/PMC1064097_F1.jpg", jpeg_bytes())
    with pytest.raises(SourceUnavailable, match=r"dataset 'pmc_vqa'.*train_2.csv has no column 'Answer' that the "
                                                 r"layout reads \(its columns: 'Figure_path', 'Question'.*"
                                                 r"'Answer_label'\).*corpus.registry.versions"):
        curate("pmc_vqa")
    assert not (tmp_path / "corpus" / "pmc_vqa").exists()
    chexpert = dataset(tmp_path, "chexpert_plus")
    write_file(chexpert, "df_chexpert_plus_240401.csv",
               "path_to_image,section_findings,section_impression,report\ntrain/p1/s1/v.jpg,Clear.,Normal.,x\n")
    with pytest.raises(SourceUnavailable, match=r"df_chexpert_plus_240401.csv has no column 'split'"):
        curate("chexpert_plus")


def test_a_layout_file_that_holds_no_records_stops_its_source(tmp_path, curate):
    """PMC-VQA's train_2.csv with its header and no row (a failed export), then as gzip bytes under
    the .csv name: the partition would publish nothing and say nothing; it stops naming the reader."""
    root = dataset(tmp_path, "pmc_vqa")
    _pmc_csv(root / "train_2.csv", ["index", "Figure_path", "Caption", "Question", "Choice A", "Choice B",
                                    "Choice C", "Choice D", "Answer", "split"], [])
    # mtime=0: gzip writes the time into its header, and about one time in a hundred puts a line
    # break there, making the blob two "lines" of text instead of a header alone
    for content in (None, gzip.compress(b"index,Figure_path,Question\n", mtime=0)):
        if content is not None:
            (root / "train_2.csv").write_bytes(content)
        with pytest.raises(SourceUnavailable, match=r"dataset 'pmc_vqa'.*its vqa reader found no records"):
            curate("pmc_vqa")
        assert not (tmp_path / "corpus" / "pmc_vqa").exists()


def test_an_unknown_layout_version_names_the_dataset_and_the_fix(tmp_path, curate):
    dataset(tmp_path, "pmc_vqa").mkdir(parents=True)
    with pytest.raises(SourceUnavailable, match=r"'pmc_vqa' has no layout version 'v3'.*corpus.registry.versions"):
        curate("pmc_vqa", "v3")
    assert not (tmp_path / "corpus" / "pmc_vqa").exists()


# ---- CheXpert Plus: the CSV names .jpg, the release ships .png -----------------------------------

def test_chexpert_plus_csv_jpg_names_read_the_shipped_png(tmp_path, curate):
    root = dataset(tmp_path, "chexpert_plus")
    header = ["path_to_image", "path_to_dcm", "frontal_lateral", "report", "section_narrative",
              "section_clinical_history", "section_history", "section_comparison", "section_technique",
              "section_procedure_comments", "section_findings", "section_impression", "section_end_of_impression",
              "section_summary", "section_accession_number", "age", "sex", "race", "ethnicity",
              "interpreter_needed", "insurance_type", "recent_bmi", "deceased", "split"]
    rows = [
        {"path_to_image": "train/patient42142/study5/view1_frontal.jpg",
         "report": "NARRATIVE: ...\nFINDINGS: Clear lungs.\nIMPRESSION: 1. No acute disease.",
         "section_findings": "Clear lungs.", "section_impression": "1. No acute disease.", "split": "train"},
        {"path_to_image": "train/patient42143/study1/view1_frontal.jpg",
         "report": "IMPRESSION: Stable cardiomegaly, unchanged.", "section_findings": "",
         "section_impression": "", "split": "train"},  # sections left empty: the report text is split
        {"path_to_image": "valid/patient64541/study1/view1_frontal.jpg", "report": "IMPRESSION: Normal.",
         "section_findings": "", "section_impression": "Normal.", "split": "valid"},  # the benchmark's rows
    ]
    with open(root.mkdir(parents=True) or root / "df_chexpert_plus_240401.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, header)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        write_file(root, "PNG/" + row["path_to_image"].replace(".jpg", ".png"), png_bytes(seed=len(row["report"])))
    report = curate("chexpert_plus")
    replies = sorted(row["messages"][1]["content"] for row in kept_rows(report))
    assert replies == ["Findings: Clear lungs.\nImpression: 1. No acute disease.",
                       "Impression: Stable cardiomegaly, unchanged."]
    assert all(image["path"].endswith(".png") for row in kept_rows(report) for image in row["images"])
    assert report["filtered_by_reason"] == {"subset": 1} and accounted(report)


# ---- a path leaving the root; a missing file; filtered rows counted ------------------------------

def test_a_path_leaving_the_root_is_quarantined_and_the_source_goes_on(tmp_path, curate):
    root = dataset(tmp_path, "vqa_rad")
    write_file(tmp_path / "data", "secret.jpg", jpeg_bytes())
    records = [{"qid": 1, "image_name": "synpic54610.jpg", "question": "Are regions of the brain infarcted? ",
                "answer": "Yes", "answer_type": "CLOSED"},
               {"qid": 2, "image_name": "../../secret.jpg", "question": "Is this a CT?", "answer": "no",
                "answer_type": "CLOSED"},
               {"qid": 3, "image_name": "/etc/passwd", "question": "Where?", "answer": "left", "answer_type": "OPEN"}]
    write_file(root, "VQA_RAD Dataset Public.json", json.dumps(records))
    write_file(root, "VQA_RAD Image Folder/synpic54610.jpg", jpeg_bytes())
    report = curate("vqa_rad")
    assert [row["answer"] for row in kept_rows(report)] == ["yes"]  # "Yes" closed -> the yes/no option
    assert [(q["reason"], q["record"]) for q in quarantine(report)] == [("unsafe_path", "row 2"),
                                                                         ("unsafe_path", "row 3")]
    assert accounted(report)


def test_a_missing_layout_file_stops_the_partition_naming_the_dataset_and_leaves_nothing(tmp_path, curate):
    write_file(dataset(tmp_path, "vqa_rad"), "README.txt", "the json was not downloaded")
    with pytest.raises(SourceUnavailable, match=r"dataset 'vqa_rad'.*VQA_RAD Dataset Public.json is missing.*osf.io"):
        curate("vqa_rad")
    assert not (tmp_path / "corpus" / "vqa_rad").exists()


def test_rows_left_out_on_purpose_are_counted_by_reason(tmp_path, curate):
    root = dataset(tmp_path, "slake")
    questions = [{"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "Which organ is abnormal?",
                  "answer": "Liver", "q_lang": "en", "qid": 11, "answer_type": "OPEN"},
                 {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "哪个器官不正常？", "answer": "肝脏",
                  "q_lang": "zh", "qid": 12, "answer_type": "OPEN"}]
    write_file(root, "train.json", json.dumps(questions, ensure_ascii=False))
    write_file(root, "imgs/xmlab1/source.jpg", jpeg_bytes())
    write_file(root, "imgs/xmlab1/detection.json", json.dumps([{"Liver": [5, 6, 20, 10]}]))
    report = curate("slake")
    assert report["filtered_by_reason"] == {"language": 1} and report["rows_kept"] == 2 and accounted(report)
    passed, note = source_checks(report, max_quarantine_rate=0.05)["rows_accounted"]
    assert passed and note.startswith("3 in = 2 kept + 0 quarantined + 1 filtered")
    assert source_checks(report, max_quarantine_rate=0.05)["rows_kept"] == (True, "2 of 3 rows kept")
    metadata = source_metadata(report, "code", 0.0)
    assert metadata["filtered"] == 1 and "| language | 1 |" in metadata["filtered_by_reason"]
    bilingual = curate("slake", "bilingual")
    assert "肝脏" in [row["answer"] for row in kept_rows(bilingual)] and bilingual["filtered"] == 0

    # a copy whose every row is left out on purpose (CheXpert Plus rows of the valid split only): the
    # partition's rows_kept check fails, saying why, instead of publishing an empty source that passes
    chexpert = dataset(tmp_path, "chexpert_plus")
    write_file(chexpert, "df_chexpert_plus_240401.csv", "path_to_image,section_findings,section_impression,report,"
               "split\nvalid/p1/s1/v.jpg,Clear.,Normal.,x,valid\n")
    none_kept = curate("chexpert_plus")
    passed, note = source_checks(none_kept, max_quarantine_rate=0.05)["rows_kept"]
    assert not passed and note.startswith("0 of 1 rows kept: every row was quarantined {} or filtered {'subset': 1}")


def test_skipped_classes_are_counted(tmp_path, curate):
    root = dataset(tmp_path, "grazpedwri_dx")
    write_file(root, "meta.yaml", "names:\n  0: boneanomaly\n  3: fracture\n  8: text\n")
    write_file(root, "images/0001_1297860395_01_WRI-L1_M014.png", png_bytes(80, 40))
    write_file(root, "labels/0001_1297860395_01_WRI-L1_M014.txt", "3 0.5 0.5 0.25 0.5\r\n8 0.9 0.1 0.1 0.1\r\n")
    report = curate("grazpedwri_dx")
    assert report["rows_kept"] == 1 and report["filtered_by_reason"] == {"class": 1} and accounted(report)


# ---- more published layouts: IU-Xray, DeepLesion, VQA-Med 2019, ROCOv2 --------------------------

def test_iu_xray_kaggle_csvs_with_quoted_multiline_fields_and_a_missing_projection(tmp_path, curate):
    root = dataset(tmp_path, "iu_xray")
    write_file(root, "indiana_reports.csv",
               "uid,MeSH,Problems,image,indication,comparison,findings,impression\r\n"
               "1,normal,normal,Xray Chest PA and Lateral,Positive TB test,None.,\"The cardiac silhouette and "
               "mediastinum size are within normal limits. There is no pulmonary edema.\",Normal chest x-XXXX.\r\n"
               "2,Cardiomegaly/borderline,Cardiomegaly,\"Chest, 2 views, frontal and lateral\",Preop.,None.,"
               "\"Borderline cardiomegaly.\nClear lungs.\",No acute pulmonary findings.\r\n"
               "3,normal,normal,\"CHEST PA and LATERAL: on XXXX, XXXX. \",Shortness of breath.,,,"
               "The lungs appear clear.\r\n")
    write_file(root, "indiana_projections.csv", "uid,filename,projection\n"
               "1,1_IM-0001-4001.dcm.png,Frontal\n1,1_IM-0001-3001.dcm.png,Lateral\n2,2_IM-0652-1001.dcm.png,Frontal\n")
    for seed, name in enumerate(["1_IM-0001-4001.dcm.png", "1_IM-0001-3001.dcm.png", "2_IM-0652-1001.dcm.png"]):
        write_file(root, f"images/images_normalized/{name}", png_bytes(seed=seed))
    report = curate("iu_xray")
    rows = {row["id"]: row for row in kept_rows(report)}
    assert len(rows["iu_xray:1"]["images"]) == 2
    assert rows["iu_xray:2"]["messages"][1]["content"] == (
        "Findings: Borderline cardiomegaly.\nClear lungs.\nImpression: No acute pulmonary findings.")
    assert [(q["reason"], q["record"]) for q in quarantine(report)] == [("missing_join_key", "row 3")]
    assert accounted(report)


def test_deeplesion_nan_box_row_is_quarantined_and_its_slice_keeps_the_others(tmp_path, curate):
    from fixtures_formats import DL_COLUMNS, png16_bytes

    root = dataset(tmp_path, "deeplesion")
    hu = np.full((64, 64), -1000, dtype=np.int32)
    write_file(root, "Images_png/000001_01_01/103.png", png16_bytes(hu + 32768))
    base = ["000001_01_01_103.png", 1, 1, 1, 103, "", "", "", "", 4, 0, "98, 108", "0.8, 0.8, 5", "64, 64",
            "-175, 275", "F", 51, 1]
    rows = [base[:6] + ["16.5, 16.5, 39.5, 39.5"] + base[7:],
            base[:6] + ["nan, 3, 10, 12"] + base[7:],   # a second annotator's box, broken
            base[:6] + ["20, 20, 30, 30"] + base[7:]]
    with open(root / "DL_info.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(DL_COLUMNS)
        writer.writerows(rows)
    report = curate("deeplesion")
    (row,) = kept_rows(report)
    assert len(row["boxes"]) == 2
    assert [(q["file"], q["record"], q["reason"]) for q in quarantine(report)] == [("DL_info.csv", "row 2", "box_nan")]


def test_vqa_med_2019_pipe_lines_with_crlf_and_a_broken_line(tmp_path, curate, monkeypatch):
    monkeypatch.setenv("IMAGECLEF_AGREEMENT", "accepted")
    root = dataset(tmp_path, "vqa_med_2019")
    write_file(root, "Training/All_QA_Pairs_train.txt",
               b"synpic41148|which plane is the image shown in?|axial\r\n"
               b"synpic43984|what abnormality is seen in the image?|enchondroma|extra\r\n"
               b"\r\nsynpic9999|is this \xff a question?|yes\r\n"
               + b"ab|" * 5_500_000 + b"x\r\n"  # millions of fields: not split past the fourth
               + b"y" * (17 << 20) + b"\r\n"  # past the line bound: read through, not held
               + b"synpic41148|what plane is this?|axial\r\n")
    write_file(root, "Training/Train_images/synpic41148.jpg", jpeg_bytes())
    report = curate("vqa_med_2019")
    assert [row["answer"] for row in kept_rows(report)] == ["axial", "axial"]
    assert sorted((q["reason"], q["record"]) for q in quarantine(report)) == [
        ("invalid_utf8", "line 4"), ("malformed_record", "line 2"), ("malformed_record", "line 5"),
        ("malformed_record", "line 6")]
    assert all(q["detail"].startswith("Training/All_QA_Pairs_train.txt") for q in quarantine(report))


def test_rocov2_hub_parquet_with_embedded_images(tmp_path, curate):
    root = dataset(tmp_path, "roco_v2")
    (root / "data").mkdir(parents=True)
    table = pa.Table.from_pylist([
        {"image": {"bytes": jpeg_bytes(seed=1), "path": "ROCOv2_2023_train_000001.jpg"}, "image_id": "ROCOv2_2023_train_000001",
         "caption": "Head CT demonstrating left parotiditis.", "cui": ["C0040405"]},
        {"image": {"bytes": jpeg_bytes(seed=2), "path": "ROCOv2_2023_train_000002.jpg"}, "image_id": "ROCOv2_2023_train_000002",
         "caption": "Axial computed tomography scan of the pelvis showing a diffuse infiltration.", "cui": ["C0040405"]}])
    pq.write_table(table, root / "data" / "train-00000-of-00027.parquet")
    report = curate("roco_v2")
    assert report["rows_kept"] == 2 and accounted(report)
    assert sorted(row["id"] for row in kept_rows(report)) == ["roco_v2:ROCOv2_2023_train_000001",
                                                              "roco_v2:ROCOv2_2023_train_000002"]


def test_a_hub_image_struct_without_bytes_is_read_from_its_path(tmp_path, curate):
    """Parquet written with ``datasets``' Image feature but without embedding the files holds
    ``{"bytes": null, "path": ...}``: the file beside the records is read (it was "zero bytes");
    an absolute path from the writer's machine is that record's unsafe_path."""
    root = dataset(tmp_path, "roco_v2")
    write_file(root, "images/ROCOv2_2023_train_000001.jpg", jpeg_bytes(seed=1))  # under the dataset root
    rows = [{"image": {"bytes": None, "path": path}, "image_id": f"ROCOv2_2023_train_00000{index}",
             "caption": "Head CT demonstrating left parotiditis.", "cui": []}
            for index, path in enumerate(["images/ROCOv2_2023_train_000001.jpg", "/home/me/cache/x.jpg"], start=1)]
    (root / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "train-00000-of-00027.parquet")
    report = curate("roco_v2")
    assert report["rows_kept"] == 1 and accounted(report)
    assert kept_rows(report)[0]["images"][0]["width"] > 0
    assert [q["reason"] for q in quarantine(report)] == ["unsafe_path"]


def test_an_embedded_image_over_the_file_size_bound_costs_its_record_only(tmp_path, curate):
    """Image bytes inside a Parquet record are held to ``max_file_bytes`` as a file on disk is."""
    root = dataset(tmp_path, "roco_v2")
    (root / "data").mkdir(parents=True)
    small, large = png_bytes(), png_bytes(300, 300)
    rows = [{"image": {"bytes": data, "path": f"ROCOv2_2023_train_00000{index}.png"},
             "image_id": f"ROCOv2_2023_train_00000{index}", "caption": "Chest radiograph.", "cui": []}
            for index, data in enumerate([small, large])]
    pq.write_table(pa.Table.from_pylist(rows), root / "data" / "train-00000-of-00027.parquet")
    report = curate("roco_v2", image_limits={"max_file_bytes": (len(small) + len(large)) // 2})
    assert report["rows_kept"] == 1 and accounted(report)
    (problem,) = quarantine(report)
    assert problem["reason"] == "file_too_large" and "ROCOv2_2023_train_000001.png" in problem["detail"]
    assert f"holds {len(large)} bytes" in problem["detail"]


def test_one_bad_byte_in_a_json_file_costs_one_record_and_header_case_is_forgiven(tmp_path, curate):
    root = dataset(tmp_path, "vqa_rad")
    records = [{"qid": 1, "image_name": "synpic1.jpg", "question": "Is this normal?", "answer": "no",
                "answer_type": "CLOSED"},
               {"qid": 2, "image_name": "synpic1.jpg", "question": "Is there BADBYTE here?", "answer": "yes",
                "answer_type": "CLOSED"}]
    write_file(root, "VQA_RAD Dataset Public.json", json.dumps(records).replace("BADBYTE", "\\u00e9").encode()
               .replace(b"\\u00e9", b"\xe9"))
    write_file(root, "VQA_RAD Image Folder/synpic1.jpg", jpeg_bytes())
    report = curate("vqa_rad")
    assert report["rows_kept"] == 1 and [(q["reason"], q["record"]) for q in quarantine(report)] == [
        ("invalid_utf8", "row 2")]
    iu = dataset(tmp_path, "iu_xray")  # a re-export spelling two headers differently
    write_file(iu, "indiana_reports.csv", "UID,Findings ,impression\n1,Clear lungs.,Normal.\n")
    write_file(iu, "indiana_projections.csv", "uid,FileName,projection\n1,1_IM.png,Frontal\n")
    write_file(iu, "images/images_normalized/1_IM.png", png_bytes())
    (row,) = kept_rows(curate("iu_xray"))
    assert row["messages"][1]["content"] == "Findings: Clear lungs.\nImpression: Normal."


def test_a_corrupt_parquet_file_stops_its_partition_naming_the_dataset(tmp_path, curate):
    write_file(dataset(tmp_path, "pathvqa"), "data/train-00000-of-00002.parquet", b"PAR1 truncated")
    with pytest.raises(SourceUnavailable, match=r"dataset 'pathvqa'.*data/train-00000-of-00002.parquet: not a Parquet "
                                                r"file read here.*huggingface-cli download"):
        curate("pathvqa")
    assert not (tmp_path / "corpus" / "pathvqa").exists()


def test_cell_tracking_frames_without_gold_segmentation_are_filtered_not_quarantined(tmp_path, curate):
    root = dataset(tmp_path, "ctc")
    mask = np.zeros((32, 32), dtype=np.uint16)
    mask[2:6, 3:9], mask[20:30, 10:12] = 1, 7  # instance ids, as man_segNNN.tif holds them
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="TIFF")
    for frame in ("t000", "t001", "t002"):
        write_file(root, f"images/{frame}.png", png_bytes(32, 32, seed=int(frame[1:])))
    write_file(root, "masks/t001.tif", buffer.getvalue())  # gold SEG exists for some frames only
    report = curate("ctc", "renamed")  # the copy renamed into images/ + masks/ (the release: round5b)
    assert report["rows_kept"] == 1 and report["filtered_by_reason"] == {"unannotated": 2} and accounted(report)
    assert len(kept_rows(report)[0]["boxes"]) == 2


# ---- text datasets, records as their cards show them ---------------------------------------------

TEXT_RECORDS = {
    "medqa": ("phrases_no_exclude_train.jsonl", [
        {"question": "A 23-year-old pregnant woman at 22 weeks gestation presents with burning upon urination...",
         "answer": "Nitrofurantoin", "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline",
                                                 "D": "Nitrofurantoin"},
         "meta_info": "step2&3", "answer_idx": "D", "metamap_phrases": ["pregnant woman", "weeks"]}], "D"),
    "medmcqa": ("data/train-00000-of-00001.parquet", [
        {"id": "e9ad821a-c438-4965-9f77-760819dfa155", "question": "Chronic urethral obstruction due to BPH can lead to:",
         "opa": "Hyperplasia", "opb": "Hyperophy", "opc": "Atrophy", "opd": "Dyplasia", "cop": 2,
         "choice_type": "single", "exp": "Chronic urethral obstruction ...", "subject_name": "Anatomy",
         "topic_name": "Urinary tract"},
        {"id": "test-row", "question": "A test-split row has no answer", "opa": "a", "opb": "b", "opc": "c",
         "opd": "d", "cop": -1, "choice_type": "single", "exp": None, "subject_name": "x", "topic_name": None}], "C"),
    "pubmedqa": ("pqa_labeled/train-00000-of-00001.parquet", [
        {"pubid": 21645374, "question": "Do mitochondria play a role in remodelling lace plant leaves?",
         "context": {"contexts": ["Programmed cell death (PCD) is ...", "The following ..."],
                     "labels": ["BACKGROUND", "RESULTS"], "meshes": ["Alismataceae"]},
         "long_answer": "Results depicted mitochondrial dynamics ...", "final_decision": "yes"}], "A"),
    "medical_o1_reasoning_sft": ("medical_o1_sft.json", [
        {"Question": "Given the symptoms of sudden weakness in the left arm and leg...",
         "Complex_CoT": "Okay, let's see what's going on here.", "Response": "The specific cardiac abnormality..."}],
        "The specific cardiac abnormality..."),
}


@pytest.mark.parametrize("name", sorted(TEXT_RECORDS))
def test_text_datasets_as_their_cards_show_them(tmp_path, curate, name):
    file, records, answer = TEXT_RECORDS[name]
    path = dataset(tmp_path, name) / file
    path.parent.mkdir(parents=True)
    if file.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(records), path)
    elif file.endswith(".jsonl"):
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    else:
        path.write_text(json.dumps(records))
    report = curate(name)
    rows = kept_rows(report)
    assert rows[0]["answer"] == answer and accounted(report)
    if name == "medmcqa":  # the test split's cop -1 names no option: quarantined, counted, named
        assert report["quarantined_by_reason"] == {"malformed_record": 1}
