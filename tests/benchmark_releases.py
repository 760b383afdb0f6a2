"""Tiny copies of every registry benchmark laid out as its publisher releases it (file names,
columns, nesting, quirks as in the registry's ``layout_source``), for the benchmark tests.

``build_release(name, root)`` writes benchmark ``name``'s copy under ``root`` and returns a
``Release``: how many rows should be evaluated and how many filtered by the benchmark's protocol.
"""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from fixtures_formats import build_fixture, jpeg_bytes, png_bytes, write_file

from medmo_pipeline.data.benchmarks.registry import load_registry

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


@dataclass
class Release:
    rows: int
    filtered: dict[str, int] = field(default_factory=dict)


def _image(seed: int, name: str, width: int = 40, height: int = 30) -> dict:
    return {"bytes": png_bytes(width, height, seed=seed), "path": name}


def _parquet(root: Path, relative: str, records: list[dict], schema: pa.Schema | None = None) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path)


def _jsonl(root: Path, relative: str, records: list[dict]) -> None:
    write_file(root, relative, "".join(json.dumps(record) + "\n" for record in records))


def _csv(root: Path, relative: str, header: list[str], rows: list[list]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


MMMU_SUBJECTS = ["Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                 "Public_Health"]


def mmmu_med(root: Path) -> Release:
    schema = pa.schema([("id", pa.string()), ("question", pa.string()), ("options", pa.string()),
                        ("explanation", pa.string()),
                        *((f"image_{k}", IMAGE_STRUCT) for k in range(1, 8)),
                        ("img_type", pa.string()), ("answer", pa.string()), ("topic_difficulty", pa.string()),
                        ("question_type", pa.string()), ("subfield", pa.string())])
    for s, subject in enumerate(MMMU_SUBJECTS):
        base = {"explanation": "", "img_type": "['Diagrams']", "topic_difficulty": "Medium", "subfield": "x",
                **{f"image_{k}": None for k in range(1, 8)}}
        records = [
            {**base, "id": f"validation_{subject}_1", "question": "<image 1> Which structure is marked?",
             "options": "['Aorta', 'Vena cava', \"Heart's apex\", 'Trachea']", "answer": "C",
             "question_type": "multiple-choice", "image_1": _image(s, "1.png")},
            {**base, "id": f"validation_{subject}_2", "question": "Which image shows the same lesion as <image 1>?",
             "options": "['<image 2>', '<image 3>', '<image 4>']", "answer": "B", "question_type": "multiple-choice",
             **{f"image_{k}": _image(10 * s + k, f"{k}.png", 20 + k, 20) for k in range(1, 5)}},
            {**base, "id": f"validation_{subject}_3", "question": "<image 1> What is the dose in mg?",
             "options": "[]", "answer": "['24', '24 mg']", "question_type": "open",
             "image_1": _image(50 + s, "1.png")},
        ]
        _parquet(root, f"{subject}/validation-00000-of-00001.parquet", records, schema)
    return Release(15)


def _hub_vqa(root: Path, answers: list[str]) -> Release:
    records = [{"image": _image(i, f"synpic{i}.jpg"), "question": f"question {i}?", "answer": answer}
               for i, answer in enumerate(answers)]
    _parquet(root, "data/test-00000-of-00001-e5bc3d208bb4deeb.parquet", records,
             pa.schema([("image", IMAGE_STRUCT), ("question", pa.string()), ("answer", pa.string())]))
    return Release(len(answers))


def vqa_rad(root: Path) -> Release:
    return _hub_vqa(root, ["yes", "No", "left lung", "the liver"])


def pathvqa(root: Path) -> Release:
    return _hub_vqa(root, ["no", "yes", "hemorrhage"])


def slake(root: Path) -> Release:
    records = [
        {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "Is this a CT image?", "answer": "Yes",
         "q_lang": "en", "location": "Abdomen", "modality": "CT", "answer_type": "CLOSED", "base_type": "vqa",
         "content_type": "Modality", "triple": ["vhead", "_", "_"], "qid": 11},
        {"img_id": 1, "img_name": "xmlab1/source.jpg", "question": "Which organ is abnormal?", "answer": "Liver ",
         "q_lang": "en", "location": "Abdomen", "modality": "CT", "answer_type": "OPEN", "base_type": "vqa",
         "content_type": "Abnormality", "triple": ["vhead", "_", "_"], "qid": 12},
        {"img_id": 2, "img_name": "xmlab2/source.jpg", "question": "这是CT图像吗?", "answer": "是", "q_lang": "zh",
         "location": "Chest", "modality": "CT", "answer_type": "CLOSED", "base_type": "vqa",
         "content_type": "Modality", "triple": ["vhead", "_", "_"], "qid": 13},
    ]
    write_file(root, "test.json", json.dumps(records, ensure_ascii=False))
    for i in (1, 2):
        write_file(root, f"imgs/xmlab{i}/source.jpg", jpeg_bytes(seed=i))
    return Release(2, {"language": 1})


def pmc_vqa(root: Path) -> Release:
    header = ["index", "Figure_path", "Caption", "Question", "Choice A", "Choice B", "Choice C", "Choice D",
              "Answer", "split"]
    rows = [[0, "PMC8253797_Fig4_11.jpg", "A, b: CT, with a comma", "What is shown?", "A:Kidney", "B:Liver ",
             "C:Spleen", "D:Lung", "B", "test"],
            [1, "PMC8253867_Fig2_41.jpg", "Caption", "Which modality?", "A:CT", "B:MRI", "C:US", "D:PET", "D", "test"]]
    _csv(root, "test_2.csv", header, rows)
    for row in rows:
        write_file(root, f"figures/{row[1]}", jpeg_bytes(seed=row[0]))
    return Release(2)


def omnimedvqa(root: Path) -> Release:
    records = [
        {"dataset": "ACRIMA", "question_id": "ACRIMA_0000", "question_type": "Disease Diagnosis",
         "question": "What is the diagnosis?", "gt_answer": "Glaucoma", "image_path": "Images/ACRIMA/Im001.png",
         "option_A": "Normal", "option_B": "Glaucoma", "option_C": "Cataract", "option_D": "Myopia",
         "modality_type": "Fundus Photography"},
        {"dataset": "ACRIMA", "question_id": "ACRIMA_0001", "question_type": "Modality Recognition",
         "question": "Which modality?", "gt_answer": "Fundus photography", "image_path": "Images/ACRIMA/Im002.png",
         "option_A": "Fundus photography", "option_B": "CT", "modality_type": "Fundus Photography"},
    ]
    write_file(root, "OmniMedVQA/QA_information/Open-access/ACRIMA.json", json.dumps(records, indent=4))
    write_file(root, "OmniMedVQA/QA_information/Restricted-access/AIDA.json", json.dumps([]))
    for i, name in enumerate(("Im001.png", "Im002.png")):
        write_file(root, f"OmniMedVQA/Images/ACRIMA/{name}", png_bytes(seed=i))
    return Release(2)


def medxpertqa_mm(root: Path) -> Release:
    records = [{"id": f"MM-{i}", "question": "A patient presents. What is it?\nAnswer Choices: (A) Sarcoidosis "
                "(B) Lymphoma (C) Tuberculosis (D) Histoplasmosis (E) Melanoma",
                "options": {"A": "Sarcoidosis", "B": "Lymphoma", "C": "Tuberculosis", "D": "Histoplasmosis",
                            "E": "Melanoma"},
                "label": "BC"[i], "images": [f"MM-{i}-a.jpeg", f"MM-{i}-b.jpeg"], "medical_task": "Diagnosis",
                "body_system": "Lymphatic", "question_type": "Reasoning"} for i in range(2)]
    _jsonl(root, "MM/test.jsonl", records)
    for record in records:
        for j, image in enumerate(record["images"]):
            write_file(root, f"images/{image}", jpeg_bytes(seed=j))
    return Release(2)


MMLU_SUBJECTS = ["anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                 "professional_medicine"]


def mmlu_med(root: Path) -> Release:
    schema = pa.schema([("question", pa.string()), ("subject", pa.string()), ("choices", pa.list_(pa.string())),
                        ("answer", pa.int64())])
    for subject in MMLU_SUBJECTS:
        records = [{"question": f"{subject} question {i}?", "subject": subject,
                    "choices": ["one", "two", "three", "four"], "answer": i} for i in range(2)]
        _parquet(root, f"{subject}/test-00000-of-00001.parquet", records, schema)
    return Release(12)


def pubmedqa(root: Path) -> Release:
    """The pubmedqa/pubmedqa repository's data/: PQA-L by PMID, and the test PMIDs with their labels."""
    records = {str(21645374 + i): {
        "QUESTION": f"Do mitochondria play a role {i}?", "CONTEXTS": ["Background.", "Results."],
        "LABELS": ["BACKGROUND", "RESULTS"], "MESHES": ["Cells"], "YEAR": "2011", "reasoning_required_pred": decision,
        "reasoning_free_pred": decision, "final_decision": decision, "LONG_ANSWER": "They do."}
        for i, decision in enumerate(["yes", "no", "maybe", "yes"])}
    write_file(root, "data/ori_pqal.json", json.dumps(records, indent=4))
    test = {pmid: record["final_decision"] for pmid, record in list(records.items())[:3]}  # the 4th: a CV question
    write_file(root, "data/test_ground_truth.json", json.dumps(test, indent=4))
    return Release(3, {"subset": 1})


def medmcqa(root: Path) -> Release:
    records = [{"id": f"e9ad821a-{i}", "question": f"Which vitamin {i}?", "opa": "A1", "opb": "B12", "opc": "C",
                "opd": "D", "cop": i, "choice_type": "single", "exp": None, "subject_name": "Biochemistry",
                "topic_name": None} for i in range(3)]
    _parquet(root, "data/validation-00000-of-00001.parquet", records)
    return Release(3)


def medqa(root: Path) -> Release:
    records = [{"question": f"A 23-year-old woman {i}...", "answer": "Nitrofurantoin",
                "options": {"A": "Ampicillin", "B": "Ceftriaxone", "C": "Doxycycline", "D": "Nitrofurantoin"},
                "meta_info": "step2&3", "answer_idx": "D", "metamap_phrases": ["woman"]} for i in range(2)]
    _jsonl(root, "phrases_no_exclude_test.jsonl", records)
    return Release(2)


def medbullets(root: Path) -> Release:
    header = ["question", "opa", "opb", "opc", "opd", "ope", "answer_idx", "answer", "link", "explanation"]
    rows = [["A 45-year-old man, smoker,\npresents with cough.", "Asthma", "COPD", "Pneumonia", "Cancer", "TB",
             "B", "COPD", "https://x", "Because."],
            ["A child presents.", "a", "b", "c", "d", "e", "E", "e", "https://y", ""]]
    _csv(root, "medbullets_op5.csv", header, rows)
    return Release(2)


def medxpertqa_text(root: Path) -> Release:
    letters = "ABCDEFGHIJ"
    # As published: the question already ends with its options inline after "Answer Choices:"
    listed = " ".join(f"({c}) option {c}" for c in letters)
    records = [{"id": f"Text-{i}", "question": f"Question {i}?\nAnswer Choices: {listed}",
                "options": {c: f"option {c}" for c in letters},
                "label": "JA"[i], "medical_task": "Diagnosis", "body_system": "Cardio", "question_type": "Reasoning"}
               for i in range(2)]
    _jsonl(root, "Text/test.jsonl", records)
    return Release(2)


def supergpqa(root: Path) -> Release:
    records = [{"uuid": f"u{i}", "question": f"Medical question {i}?", "options": ["w", "x", "y", "z"],
                "answer": "y", "answer_letter": "C", "discipline": "Medicine", "field": "Clinical Medicine",
                "subfield": "Cardiology", "difficulty": "easy", "is_calculation": False} for i in range(2)]
    records.insert(1, {**records[0], "uuid": "u-law", "discipline": "Law", "field": "Law"})  # another discipline
    _jsonl(root, "SuperGPQA-all.jsonl", records)
    return Release(2, {"subset": 1})


def mimic_cxr(root: Path) -> Release:
    reports = {
        "p10/p10000032/s50414267": "FINAL REPORT\n EXAMINATION: CHEST (PA AND LAT)\n\n FINDINGS: No focal "
                                   "consolidation.\n\n IMPRESSION: No acute cardiopulmonary process.\n",
        "p10/p10000032/s53189527": "FINAL REPORT\n FINDINGS: Stable cardiomegaly.\n IMPRESSION: Stable.\n",
        "p10/p10000035/s51234567": "",  # an empty report: the protocol excludes it
        "p10/p10000040/s52222222": "FINDINGS AND IMPRESSION: Lungs are clear without effusion or pneumothorax.\n",
    }
    reports["p10/p10000099/s59999999"] = "FINDINGS: A training study, not evaluated.\n"
    split = ["dicom_id,study_id,subject_id,split"]
    for i, (study, text) in enumerate(reports.items()):
        write_file(root, f"files/{study}.txt", text)
        write_file(root, f"files/{study}/02aa804e-bde0afdd-{i}.jpg", jpeg_bytes(seed=i))
        subject, study_id = study.split("/")[1][1:], study.split("/")[2][1:]
        for view in range(2 if i == 0 else 1):  # one line per image: a study may be listed twice
            split.append(f"02aa804e-{i}-{view},{study_id},{subject},{'train' if '99999' in study else 'test'}")
    with gzip.open(root / "mimic-cxr-2.0.0-split.csv.gz", "wt") as handle:
        handle.write("\n".join(split) + "\n")
    return Release(3, {"empty_reference": 1, "split": 1})


def chexpert_plus(root: Path) -> Release:
    header = ["path_to_image", "path_to_dcm", "frontal_lateral", "ap_pa", "deid_patient_id", "patient_report_date_order",
              "report", "section_narrative", "section_clinical_history", "section_history", "section_comparison",
              "section_technique", "section_procedure_comments", "section_findings", "section_impression",
              "section_end_of_impression", "section_summary", "section_accession_number", "age", "sex", "race",
              "ethnicity", "interpreter_needed", "insurance_type", "recent_bmi", "deceased", "split"]
    findings = ["Heart size normal, lungs clear.", "Small left effusion, basilar atelectasis.", ""]
    impressions = ["No acute disease in the chest.", "Effusion is new since the prior film.", ""]
    named = [dict.fromkeys(header, "") | {  # the CSV names .jpg files; the release ships .png
        "path_to_image": f"valid/patient6454{i}/study1/view1_frontal.jpg", "frontal_lateral": "Frontal",
        "split": "valid", "section_findings": findings[i], "section_impression": impressions[i]} for i in range(3)]
    named.append(dict.fromkeys(header, "") | {  # a training study in the same file: not evaluated
        "path_to_image": "train/patient00001/study1/view1_frontal.jpg", "split": "train",
        "section_findings": "Lungs clear.", "section_impression": "Normal."})
    _csv(root, "df_chexpert_plus_240401.csv", header, [[row[h] for h in header] for row in named])
    for i in range(3):
        write_file(root, f"PNG/valid/patient6454{i}/study1/view1_frontal.png", png_bytes(seed=i))
    return Release(2, {"empty_reference": 1, "subset": 1})


def iu_xray(root: Path) -> Release:
    _csv(root, "indiana_reports_test.csv",
         ["uid", "MeSH", "Problems", "image", "indication", "comparison", "findings", "impression"],
         [[1, "normal", "normal", "Xray Chest PA and Lateral", "Positive TB test", "None.",
           "The cardiac silhouette and mediastinum size are within normal limits.", "Normal chest x-XXXX."],
          [2, "Cardiomegaly/borderline", "Cardiomegaly", "Chest, 2 views", "Preop", "", "",
           "Borderline cardiomegaly with mild pulmonary vascular congestion."],
          [3, "normal", "normal", "PA and lateral", "", "", "", ""]])
    _csv(root, "indiana_projections.csv", ["uid", "filename", "projection"],
         [[1, "1_IM-0001-4001.dcm.png", "Frontal"], [1, "1_IM-0001-3001.dcm.png", "Lateral"],
          [2, "2_IM-0652-1001.dcm.png", "Frontal"], [3, "3_IM-1384-1001.dcm.png", "Frontal"]])
    for i, name in enumerate(["1_IM-0001-4001.dcm.png", "1_IM-0001-3001.dcm.png", "2_IM-0652-1001.dcm.png",
                              "3_IM-1384-1001.dcm.png"]):
        write_file(root, f"images/images_normalized/{name}", png_bytes(seed=i))
    return Release(2, {"empty_reference": 1})


def medtrinity(root: Path) -> Release:
    records = [{"image": _image(i, f"{i}.jpg"), "id": f"8031efe0-{i}",
                "caption": f"The image is a CT scan of the abdomen number {i} showing the liver."} for i in range(3)]
    _parquet(root, "eval/train-00000-of-00001.parquet", records,
             pa.schema([("image", IMAGE_STRUCT), ("id", pa.string()), ("caption", pa.string())]))
    return Release(3)


def _registry_layout(name: str, root: Path) -> Release:
    loader = load_registry().get(name).loaders[0]
    from medmo_pipeline.data.benchmarks.readers import reader

    return Release(build_fixture(loader.family, root, reader(loader.family).Options.model_validate(loader.options)))


MEDSG_RECORDS = {
    "Task3.json": [{"task": "multi_view", "images": ["MedSG-Bench/MedSG-Bench/Task3/case1_view1.png",
                                                     "MedSG-Bench/MedSG-Bench/Task3/case1_view2.png"],
                    "question": "<image>\n<image>\nThe lesion at <|box_start|>(10,10),(40,30)<|box_end|> in the first "
                                "view: where is it in the second view?",
                    "answer": [100, 60, 200, 160], "size": [400, 300]}],
    "Task4.json": [{"task": "object_tracking", "images": [f"MedSG-Bench/MedSG-Bench/Task4/seq{k}.png" for k in range(3)],
                    "question": "Track the <|object_ref_start|>tumour<|object_ref_end|> in the last frame.",
                    "answer": [20, 30, 90, 110]},
                   {"task": "object_tracking", "images": ["MedSG-Bench/MedSG-Bench/Task4/seq0.png"],
                    "question": "Track it.", "answer": [5, 5, 50, 60]}],
    "Task8.json": [{"task": "referring", "images": ["MedSG-Bench/MedSG-Bench/Task8/AbdomenCT1K_liver.png"],
                    "question": "Please find the bounding box coordinates for the area described by: "
                                "<|object_ref_start|>Liver<|object_ref_end|>.", "answer": [157, 130, 254, 246]}],
}


def medsg(root: Path, task: str) -> Release:
    sizes = {"Task3": (200, 150)}  # the multi-view images are smaller than their `size` frame (400 x 300)
    for file, records in MEDSG_RECORDS.items():
        write_file(root, file, json.dumps(records))
        for record in records:
            for k, path in enumerate(record["images"]):
                width, height = sizes.get(file[:-5], (336, 336))
                write_file(root, path.removeprefix("MedSG-Bench/"), png_bytes(width, height, seed=k))
    tasks = [record["task"] for records in MEDSG_RECORDS.values() for record in records]
    return Release(tasks.count(task), {"other_subtask": len(tasks) - tasks.count(task)})


BUILDERS = {
    "mmmu_med": mmmu_med, "vqa_rad": vqa_rad, "slake": slake, "pathvqa": pathvqa, "pmc_vqa": pmc_vqa,
    "omnimedvqa": omnimedvqa, "medxpertqa_mm": medxpertqa_mm, "mmlu_med": mmlu_med, "pubmedqa": pubmedqa,
    "medmcqa": medmcqa, "medqa": medqa, "medbullets": medbullets, "medxpertqa_text": medxpertqa_text,
    "supergpqa": supergpqa, "mimic_cxr": mimic_cxr, "chexpert_plus": chexpert_plus, "iu_xray": iu_xray,
    "medtrinity": medtrinity,
    "nih_chest_xray": lambda root: Release(_registry_layout("nih_chest_xray", root).rows, {"subset": 1}),
    "deeplesion": lambda root: Release(_registry_layout("deeplesion", root).rows - 1),  # one slice is Train_Val_Test 3
    "bacteria": lambda root: Release(_registry_layout("bacteria", root).rows, {"subset": 1}),  # a training image
    "medsg_multi_view": lambda root: medsg(root, "multi_view"),
    "medsg_object_tracking": lambda root: medsg(root, "object_tracking"),
    "medsg_referring": lambda root: medsg(root, "referring"),
}


def build_release(name: str, root: Path) -> Release:
    return BUILDERS[name](root)
