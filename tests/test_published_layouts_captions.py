"""Image-text sets read from copies laid out as their releases ship them (PMC-OA, PubMedVision,
Quilt-LLaVA-Pretrain, CT-RATE, FairVLMed, MedTrinity-25M, MIMIC-Ext-MIMIC-CXR-VQA): the record file the registry names
beside its siblings, image paths as the records write them, and the quirks of each release (a
record naming an image the zips do not hold, ``<image>`` after the prompt text)."""

# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)
from __future__ import annotations

import csv
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
from fixtures_formats import jpeg_bytes, png_bytes, write_file
from test_published_layouts import (
    accounted,
    curate,  # noqa: F401 (a fixture: tests name it as a parameter)
    dataset,
    kept_rows,
    quarantine,
)


def _csv_text(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)  # pandas-style quoting: fields with commas in quotes, CRLF line ends
    return buffer.getvalue()


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def test_pmc_oa_reads_the_subfigure_captions_not_the_beta_compound_ones(tmp_path, curate):
    root = dataset(tmp_path, "pmc_oa")
    write_file(root, "pmc_oa.jsonl", _jsonl([
        {"image": "PMC212319_Fig3_4.jpg",
         "caption": "A. Real time image of the translocation of ARF1-GFP to the plasma membrane."},
        {"image": "PMC212319_Fig3_5.jpg", "caption": "B. The same cell 30 s later."}]))
    write_file(root, "pmc_oa_beta.jsonl", _jsonl([
        {"image": "PMC212319_Fig3_4.jpg", "caption": "A. Real time image ... B. The same cell 30 s later."}]))
    # images.zip unzipped where it lies: its one folder, as public loaders read it
    write_file(root, "caption_T060_filtered_top4_sep_v0_subfigures/PMC212319_Fig3_4.jpg", jpeg_bytes(seed=1))
    write_file(root, "caption_T060_filtered_top4_sep_v0_subfigures/PMC212319_Fig3_5.jpg", jpeg_bytes(seed=2))
    report = curate("pmc_oa")
    replies = sorted(row["messages"][-1]["content"] for row in kept_rows(report))
    assert replies == ["A. Real time image of the translocation of ARF1-GFP to the plasma membrane.",
                       "B. The same cell 30 s later."]
    assert all(len(row["images"]) == 1 for row in kept_rows(report))
    assert report["rows_in"] == 2 and accounted(report)


def test_pubmed_vision_image_lists_and_an_image_missing_from_the_zips(tmp_path, curate):
    root = dataset(tmp_path, "pubmed_vision")
    records = [
        {"id": "PubMedVision_InstructionTuning_VQA_0", "image": ["images/pmc_7199568_fig2_0.jpg"],
         "conversations": [{"from": "human", "value": "<image>\nWhat imaging technique was used?"},
                           {"from": "gpt", "value": "The image is an axial contrast-enhanced CT of the abdomen."}],
         "modality": "Computed Tomography", "body_part": "Abdomen"},
        {"id": "PubMedVision_InstructionTuning_VQA_1",
         "image": ["images/pmc_8043711_fig1_0.jpg", "images/pmc_8043711_fig1_1.jpg"],
         "conversations": [{"from": "human", "value": "<image>\n<image>\nCompare the two panels."},
                           {"from": "gpt", "value": "The left panel is before treatment, the right after."}],
         "modality": "Magnetic Resonance Imaging", "body_part": "Brain"},
        {"id": "PubMedVision_InstructionTuning_VQA_2", "image": ["images/pmc_9_0.jpg"],  # not in any images_*.zip
         "conversations": [{"from": "human", "value": "<image>\nDescribe the figure."},
                           {"from": "gpt", "value": "A histology section."}],
         "modality": "Microscopy Images", "body_part": "Cell"}]
    write_file(root, "PubMedVision_InstructionTuning_VQA.json", json.dumps(records, indent=2))
    write_file(root, "PubMedVision_Alignment_VQA.json", json.dumps(records[:1]))  # the sibling config: not read
    for name in ("pmc_7199568_fig2_0.jpg", "pmc_8043711_fig1_0.jpg", "pmc_8043711_fig1_1.jpg"):
        write_file(root, f"images/{name}", jpeg_bytes(seed=len(name)))  # unzip -j: one flat images/ folder
    report = curate("pubmed_vision")
    rows = {row["id"].rsplit(":", 1)[1]: row for row in kept_rows(report)}
    assert sorted(rows) == ["PubMedVision_InstructionTuning_VQA_0", "PubMedVision_InstructionTuning_VQA_1"]
    assert rows["PubMedVision_InstructionTuning_VQA_0"]["messages"][0]["content"] == "What imaging technique was used?"
    assert len(rows["PubMedVision_InstructionTuning_VQA_1"]["images"]) == 2
    assert [q["reason"] for q in quarantine(report)] == ["image_missing"] and accounted(report)


def test_quilt_llava_pretrain_reads_images_from_quilt_1m(tmp_path, curate):
    root = dataset(tmp_path, "quilt_llava_pretrain")
    write_file(root, "quilt_pretrain.json", json.dumps([
        {"id": "2Hq0IYbRkOo_image_0", "image": "2Hq0IYbRkOo_image_0.jpg",
         "conversations": [{"from": "human", "value": "Render a clear and concise summary of the photo.\n<image>"},
                           {"from": "gpt", "value": "Lymphocytes infiltrating the dermis around a hair follicle."}]}]))
    write_file(root, "quilt_1m/2Hq0IYbRkOo_image_0.jpg", jpeg_bytes())
    report = curate("quilt_llava_pretrain")
    (row,) = kept_rows(report)
    assert row["task"] == "caption" and len(row["images"]) == 1
    assert [turn["content"] for turn in row["messages"]] == [
        "Render a clear and concise summary of the photo.", "Lymphocytes infiltrating the dermis around a hair follicle."]
    assert report["quarantined"] == 0 and accounted(report)


def test_ct_rate_reports_find_their_slice_under_the_volume_name_without_nii_gz(tmp_path, curate):
    root = dataset(tmp_path, "ct_rate")
    lines = ["VolumeName,ClinicalInformation_EN,Technique_EN,Findings_EN,Impressions_EN",
             ('train_1_a_1.nii.gz,Not given.,"Non-contrast images were taken in the axial plane.",'
             '"Trachea, both main bronchi are open. No pleural effusion.","No acute findings."'),
             'train_2_a_1.nii.gz,Cough.,"Axial plane.","Nodule in the right upper lobe.",']
    write_file(root, "dataset/radiology_text_reports/train_reports.csv", "\n".join(lines) + "\n")
    write_file(root, "slices/train_1_a_1.png", png_bytes())  # train_2_a_1 was not sliced: image_missing
    report = curate("ct_rate")
    (row,) = kept_rows(report)
    assert row["id"].endswith("train_1_a_1.nii.gz") and len(row["images"]) == 1
    assert row["messages"][-1]["content"] == ("Findings: Trachea, both main bronchi are open. No pleural effusion.\n"
                                              "Impression: No acute findings.")
    assert [q["reason"] for q in quarantine(report)] == ["image_missing"] and accounted(report)


def test_fairvlmed_summary_rows_name_their_npz_and_read_its_png_export(tmp_path, curate, monkeypatch):
    monkeypatch.setenv("FAIRVLMED_AGREEMENT", "accepted")
    root = dataset(tmp_path, "fairvlmed")
    rows = [["filename", "age", "gender", "race", "ethnicity", "language", "maritalstatus", "glaucoma", "note",
             "gpt4_summary", "use"],
            ["data_00001.npz", "56.67", "female", "white", "non-hispanic", "english", "single", "yes",
             "56 y/o F, IOP 24 OD, cup-to-disc 0.8, superior arcuate defect, started latanoprost.",
             "The patient has glaucoma with elevated eye pressure and a visual field defect, treated with drops.",
             "training"],
            ["data_00002.npz", "61.2", "male", "asian", "non-hispanic", "english", "married", "no",
             "routine exam, healthy optic nerves", "", "validation"]]
    write_file(root, "data_summary.csv", _csv_text(rows))
    write_file(root, "images/data_00001.png", png_bytes())
    write_file(root, "images/data_00002.png", png_bytes(seed=1))
    report = curate("fairvlmed")
    (row,) = kept_rows(report)
    assert row["id"].endswith("data_00001.npz") and len(row["images"]) == 1
    assert row["messages"][-1]["content"].startswith("The patient has glaucoma")
    assert report["quarantined_by_reason"] == {"missing_answer": 1} and accounted(report)


def test_medtrinity_parquet_rows_embed_their_image_and_a_multigranular_caption(tmp_path, curate):
    caption = ("The image is a non-contrasted computed tomography (CT) scan of the brain. A hyperdense region is "
               "located in the left parietal lobe, consistent with an acute intracerebral haemorrhage.")
    table = pa.Table.from_pylist([
        {"image": {"bytes": jpeg_bytes(seed=3), "path": "8031efe0-1b5c-11ef-8929-000066532cad.jpg"},
         "id": "8031efe0-1b5c-11ef-8929-000066532cad", "caption": caption},
        {"image": {"bytes": b"", "path": "missing.jpg"}, "id": "80320a35-1b5c-11ef-8929-000066532cad",
         "caption": "An image whose bytes were not shipped."}])  # without bytes: the path, not beside the records
    (dataset(tmp_path, "medtrinity") / "data").mkdir(parents=True)
    pq.write_table(table, dataset(tmp_path, "medtrinity") / "data" / "train-00000-of-00001.parquet")
    report = curate("medtrinity", "demo")  # the demo layout: images embedded
    (row,) = kept_rows(report)
    assert row["id"].endswith("8031efe0-1b5c-11ef-8929-000066532cad") and row["messages"][-1]["content"] == caption
    assert [q["reason"] for q in quarantine(report)] == ["image_missing"] and accounted(report)


def test_mimic_cxr_vqa_answer_lists_and_image_paths_under_files(tmp_path, curate):
    root = dataset(tmp_path, "mimic_ext_mimic_cxr_vqa")
    image_path = "p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"

    def record(idx: int, question: str, answer: list[str], semantic_type: str) -> dict:
        return {"subject_id": "10000032", "study_id": "50414267", "image_path": image_path, "answer": answer,
                "split": "train", "idx": idx, "image_id": "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
                "question": question, "content_type": "anatomy", "semantic_type": semantic_type,
                "template": "...", "template_program": "program_1", "template_arguments": {
                    "object": {"0": "left lung"}, "attribute": {}, "category": {}, "viewpos": {}, "gender": {}}}

    write_file(root, "dataset/train.json", json.dumps([  # generate_answer.py: yes/no as ["yes"], None as []
        record(13280, "Are there signs of pleural effusion in the left lung?", ["yes"], "verify"),
        record(13281, "Which anatomical locations show atelectasis?", ["left lower lung zone", "left lung"], "query"),
        record(13282, "List all abnormalities in the right apical zone.", [], "query")], indent=4))
    write_file(root, f"files/{image_path}", jpeg_bytes())
    report = curate("mimic_ext_mimic_cxr_vqa")
    answers = {row["id"].rsplit(":", 1)[1]: row["messages"][-1]["content"] for row in kept_rows(report)}
    assert answers == {"13280": "yes", "13281": "left lower lung zone, left lung"}
    assert report["quarantined_by_reason"] == {"missing_answer": 1} and accounted(report)


def test_medpix_clinqa_shards_embed_the_image_in_image_id_and_root_csvs_are_not_read(tmp_path, curate):
    root = dataset(tmp_path, "medpix_clinqa")
    table = pa.Table.from_pylist([
        {"image_id": {"bytes": png_bytes(seed=4), "path": "MPX1009_synpic46283.png"},
         "question": "What was the patient's presenting complaint?",
         "answer": "A 40-year-old woman with worsening headaches over two months."}])
    (root / "data").mkdir(parents=True)
    pq.write_table(table, root / "data" / "train-00000-of-00007-7c3594e1ed5838ea.parquet")
    write_file(root, "alignment.csv", "image_id,caption\nMPX1009_synpic46283,Axial T2 MRI\n")  # beside data/ (contents illustrative)
    write_file(root, "from_captions.csv", "image_id,question,answer\nMPX1009_synpic46283,q,a\n")
    report = curate("medpix_clinqa")
    (row,) = kept_rows(report)
    assert len(row["images"]) == 1 and row["messages"][-1]["content"].startswith("A 40-year-old woman")
    assert report["rows_in"] == 1 and accounted(report)
