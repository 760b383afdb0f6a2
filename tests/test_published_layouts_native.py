"""Datasets that used to need a conversion of their release, read as shipped (ROCO's per-split
captions.txt, CheXpert's train.csv labels, TissueNet's .npz arrays, MedSG-188K's task JSON files),
and the entries with no published layout, read in the format their registry entry documents."""

# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from fixtures_formats import jpeg_bytes, png_bytes, write_file
from test_published_layouts import (
    accounted,
    curate,  # noqa: F401 (a fixture: tests name it as a parameter)
    dataset,
    kept_rows,
    quarantine,
)

# ---- ROCO: the repository's captions.txt + the images scripts/fetch.py saves ----------------------

ROCO_CAPTIONS = (
    "ROCO_00020\t Axial computed tomography scan of the pelvis showing a diffuse infiltration of the bladder"
    " wall, catheter in situ (arrow).\n"
    "ROCO_00415\t Anteroposterior radiograph demonstrating the \u2018fleck\u2019 sign (arrow) of the lateral"
    " malleolus.\n"
    'ROCO_00600\t Transabdominal ultrasound.Notes: the delicate "cobweb" is seen.\n'
    "ROCO_00976\t Mammographie de profil de Madame GF montrant une opacit\u00e9 du sein gauche\n"
)


def test_roco_reads_the_repository_captions_and_the_fetched_images(tmp_path, curate):
    root = dataset(tmp_path, "roco")
    split = "data/train/radiology"
    write_file(root, f"{split}/captions.txt", ROCO_CAPTIONS)
    write_file(root, f"{split}/licences.txt", "ROCO_ID,PMC_ID,CC\nROCO_00020,PMC3970251_x.jpg,CC BY\n")
    write_file(root, f"{split}/dlinks.txt", "ROCO_00020\twget -r ftp://example/PMC3970251.tar.gz -P /path\tx.jpg\n")
    write_file(root, "data/train/non-radiology/captions.txt", "ROCO_81827\t A photograph, not radiology.\n")
    for number, roco_id in enumerate(("ROCO_00020", "ROCO_00415", "ROCO_00600")):  # ROCO_00976: fetch failed
        write_file(root, f"{split}/images/{roco_id}.jpg", jpeg_bytes(seed=number))
    report = curate("roco")
    rows = {row["id"].rsplit(":", 1)[1]: row for row in kept_rows(report)}
    assert sorted(rows) == ["ROCO_00020", "ROCO_00415", "ROCO_00600"]
    assert rows["ROCO_00600"]["messages"][-1]["content"] == (
        'Transabdominal ultrasound.Notes: the delicate "cobweb" is seen.')  # quotes are text, leading space gone
    assert rows["ROCO_00020"]["images"][0]["path"] == f"{split}/images/ROCO_00020.jpg"
    assert [q["reason"] for q in quarantine(report)] == ["image_missing"] and accounted(report)


# ---- CheXpert: train.csv labels over the study folders ------------------------------------------

CHEXPERT_HEADER = ("Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
                   "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,"
                   "Pleural Effusion,Pleural Other,Fracture,Support Devices")
CHEXPERT_ROWS = [
    "{v}/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,AP,1.0,,,,,,,,,0.0,,,,1.0",
    "{v}/train/patient00002/study2/view1_frontal.jpg,Female,87,Frontal,AP,,,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,",
    "{v}/train/patient00002/study2/view2_lateral.jpg,Female,87,Lateral,,,,-1.0,,,,,,,,,,,",  # only uncertain
    "{v}/train/patient00003/study1/view1_frontal.jpg,Male,41,Frontal,AP,,,,,,2.0,,,,,,,,",  # not a label value
]


@pytest.mark.parametrize("version", ["v1.0", "small"])
def test_chexpert_train_csv_labels_become_finding_lists(tmp_path, curate, version):
    folder = "CheXpert-v1.0" if version == "v1.0" else "CheXpert-v1.0-small"
    root = dataset(tmp_path, "chexpert")
    write_file(root, f"{folder}/train.csv", "\n".join([CHEXPERT_HEADER, *(r.format(v=folder) for r in CHEXPERT_ROWS)]))
    write_file(root, f"{folder}/valid.csv", CHEXPERT_HEADER + "\n")  # the validation labels: not read
    for number, row in enumerate(CHEXPERT_ROWS):
        write_file(root, row.format(v=folder).split(",")[0], jpeg_bytes(seed=number))
    report = curate("chexpert", version)
    rows = {row["id"].rsplit(":", 1)[1]: row for row in kept_rows(report)}
    assert {key.split("/", 1)[1]: row["messages"][-1]["content"] for key, row in rows.items()} == {
        "train/patient00001/study1/view1_frontal.jpg": "No Finding, Support Devices",
        # uncertain (-1.0) findings are said to be uncertain, not left out (which read as absent)
        "train/patient00002/study2/view1_frontal.jpg":
            "Lung Opacity, Fracture; uncertain: Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion",
        "train/patient00002/study2/view2_lateral.jpg": "Uncertain: Cardiomegaly"}
    assert not report["filtered_by_reason"]
    assert [q["reason"] for q in quarantine(report)] == ["bad_number"] and accounted(report)
    assert all(len(row["images"]) == 1 and row["images"][0]["width"] > 0 for row in rows.values())


def test_chexpert_uncertain_labels_can_count_as_positive(tmp_path):
    from medmo_pipeline.data.adapters import iter_samples

    write_file(tmp_path, "CheXpert-v1.0/train.csv", "\n".join([CHEXPERT_HEADER, CHEXPERT_ROWS[2].format(v="CheXpert-v1.0")]))
    rows = list(iter_samples("label_csv", tmp_path, {"file": "CheXpert-v1.0/train.csv", "uncertain": "positive"}))
    assert [row["answer"] for row in rows] == ["Cardiomegaly"]


# ---- DeepCell TissueNet: the .npz as downloaded ---------------------------------------------------

def _tissuenet_npz(compressed: bool) -> bytes:
    rng = np.random.default_rng(0)
    images = rng.random((3, 24, 32, 2)).astype(np.float32)  # (nucleus, cell) channels
    images[2, 0, 0, 0] = np.nan
    labels = np.zeros((3, 24, 32, 2), dtype=np.int32)  # (cell, nucleus) channels: swapped against X
    labels[0, 2:6, 3:9, 1], labels[0, 10:20, 12:14, 1] = 1, 4  # two nuclei in sample 0
    labels[0, 0:23, 0:30, 0] = 9  # one whole cell: a box the nucleus entry must not read
    labels[2, 1:3, 1:3, 1] = 2
    meta = np.array([["filename", "tissue"], ["a.tif", "breast"]], dtype=object)  # pickled: never read
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, X=images, y=labels, meta=meta)
    return buffer.getvalue()


@pytest.mark.parametrize("compressed", [False, True])
def test_tissuenet_npz_is_read_sample_by_sample(tmp_path, curate, monkeypatch, compressed):
    monkeypatch.setenv("DEEPCELL_ACCESS_TOKEN", "attested-for-the-test")
    root = dataset(tmp_path, "deepcell")
    write_file(root, "tissuenet_v1.1_train.npz", _tissuenet_npz(compressed))
    write_file(root, "tissuenet_v1.1_val.npz", b"not read")
    report = curate("deepcell")
    rows = kept_rows(report)
    assert [row["id"].rsplit(":", 2)[1] for row in rows] == ["0"]  # sample 1 has no nucleus, sample 2 a NaN
    boxes = sorted((b["x1"], b["y1"], b["x2"], b["y2"]) for b in rows[0]["boxes"])
    assert boxes == [(3, 2, 9, 6), (12, 10, 14, 20)]
    assert (rows[0]["images"][0]["width"], rows[0]["images"][0]["height"]) == (32, 24)
    assert report["filtered_by_reason"] == {"no_finding": 1}
    assert [q["reason"] for q in quarantine(report)] == ["bad_number"] and accounted(report)


def test_a_truncated_or_pickled_npz_stops_the_source_naming_the_file(tmp_path):
    from medmo_pipeline.data.adapters import iter_outcomes
    from medmo_pipeline.data.adapters.records import SourceLayoutError

    write_file(tmp_path, "a.npz", _tissuenet_npz(False)[:4000])
    with pytest.raises(SourceLayoutError, match="a.npz"):
        list(iter_outcomes("instance_masks_npz", tmp_path, {"file": "a.npz"}))
    buffer = io.BytesIO()
    np.savez(buffer, X=np.array([[[{"x": 1}]]], dtype=object), y=np.zeros((1, 1, 1)))
    write_file(tmp_path, "b.npz", buffer.getvalue())
    with pytest.raises(SourceLayoutError, match="b.npz: X.npy is object"):
        list(iter_outcomes("instance_masks_npz", tmp_path, {"file": "b.npz"}))

    def headers_only(name: str, shape: tuple, descr: str) -> None:  # the arrays' data would be gigabytes
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for key in ("X", "y"):
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
                archive.writestr(f"{key}.npy", header.getvalue())  # the magic and header, no data
        write_file(tmp_path, name, buffer.getvalue())

    headers_only("channels.npz", (1, 64, 64, 100_000), "<f4")  # 1.6 GB a sample: its channels count too
    with pytest.raises(SourceLayoutError, match="channels.npz X samples says 64x64x100000 frames > 64000000 pixels"):
        list(iter_outcomes("instance_masks_npz", tmp_path, {"file": "channels.npz"}))
    headers_only("records.npz", (1, 64, 64), "|V1000000")  # raw bytes of any size per value: no numbers
    with pytest.raises(SourceLayoutError, match=r"records.npz: X.npy is \|V1000000"):
        list(iter_outcomes("instance_masks_npz", tmp_path, {"file": "records.npz"}))


# ---- MedSG-188K: the MedSG-Train task files of the MedSG-Bench hub repository --------------------

def _medsg_record(task: str, names: list[str], replies: list[tuple[str, str]]) -> dict:
    turns = []
    for number, (question, reply) in enumerate(replies):
        prefix = "<image>\n" * len(names) if number == 0 else ""
        turns += [{"from": "human", "value": prefix + question}, {"from": "gpt", "value": reply}]
    return {"id": f"{task}/{names[0]}", "task": task,
            "images": [f"MedSG-Bench/MedSG-Train/Task8/{name}" for name in names], "conversations": turns}


def test_medsg_train_task_files_with_their_release_paths_and_pixel_boxes(tmp_path, curate):
    root = dataset(tmp_path, "medsg")
    ask = "Identify the bounding box of the region described by the following expression: " \
          "<|object_ref_start|>{}<|object_ref_end|>."
    records = [
        _medsg_record("referring", ["ACDC_MRI_LeftVentricle_1.png", "4C2021_CT_PharynxCancer_2.png"], [
            (ask.format("LeftVentricle"), "It's in the first image. <|box_start|>(10,14),(41,49)<|box_end|>"),
            (ask.format("PharynxCancer"), "It's in the second image. <|box_start|>(4,8),(21,22)<|box_end|>")]),
        _medsg_record("referring", ["AbdomenCT1K_CT_Liver_3.png"], [
            (ask.format("Liver"), "It's in the first image. <|box_start|>(5,6),(30,20)<|box_end|>")]),
        _medsg_record("referring", ["AbdomenCT1K_CT_Spleen_4.png"], [  # a box past the 64 x 48 image
            (ask.format("Spleen"), "It's in the first image. <|box_start|>(5,6),(300,20)<|box_end|>")]),
        _medsg_record("referring", ["not_in_the_zip.png"], [(ask.format("Liver"), "<|box_start|>(1,1),(2,2)<|box_end|>")]),
    ]
    write_file(root, "MedSG-Train/Task8.json", json.dumps(records, indent=2))
    write_file(root, "MedSG-Bench/Task8.json", json.dumps([{"task": "referring", "images": []}]))  # the benchmark
    for number, name in enumerate(("ACDC_MRI_LeftVentricle_1.png", "4C2021_CT_PharynxCancer_2.png",
                                   "AbdomenCT1K_CT_Liver_3.png", "AbdomenCT1K_CT_Spleen_4.png")):
        write_file(root, f"MedSG-Train/Task8/{name}", png_bytes(64, 48, seed=number))
    report = curate("medsg")
    rows = {row["id"].split(":", 1)[1]: row for row in kept_rows(report)}
    two = rows["referring/ACDC_MRI_LeftVentricle_1.png"]
    assert len(two["images"]) == 2 and two["boxes"] == []  # which image a box is on is said in the reply only
    assert [m["role"] for m in two["messages"]] == ["user", "assistant"] * 2
    assert "<image>" not in two["messages"][0]["content"]
    one = rows["referring/AbdomenCT1K_CT_Liver_3.png"]
    assert [(b["x1"], b["y1"], b["x2"], b["y2"]) for b in one["boxes"]] == [(5, 6, 30, 20)]  # pixels, as written
    assert sorted(q["reason"] for q in quarantine(report)) == ["bad_number", "image_missing"] and accounted(report)


# ---- NIH-VQA: no release of its own; our question over ChestX-ray14's Data_Entry csv --------------

NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
NIH_ROWS = ["00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143",
            "00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143",
            "00000002_000.png,No Finding,0,2,81,M,PA,2500,2048,0.171,0.171",
            "00000003_000.png,,0,3,74,F,PA,2500,2048,0.168,0.168"]  # an empty label cell


@pytest.mark.parametrize(("version", "file", "tail"), [("", "Data_Entry_2017_v2020.csv", ""),
                                                        ("2017", "Data_Entry_2017.csv", ",")])
def test_nih_vqa_asks_for_the_finding_labels_of_chestxray14(tmp_path, curate, version, file, tail):
    root = dataset(tmp_path, "nih_vqa")
    write_file(root, file, "\n".join(line + tail for line in [NIH_HEADER, *NIH_ROWS]) + "\n")
    write_file(root, "BBox_List_2017.csv", "Image Index,Finding Label,Bbox [x,y,w,h],,,\n")  # not read here
    for number, row in enumerate(NIH_ROWS):
        write_file(root, f"images/{row.split(',')[0]}", png_bytes(32, 32, seed=number))
    report = curate("nih_vqa", version)
    answers = {row["id"].rsplit(":", 1)[1]: row["answer"] for row in kept_rows(report)}
    assert answers == {"00000001_000.png": "Cardiomegaly", "00000001_001.png": "Cardiomegaly, Emphysema",
                       "00000002_000.png": "No Finding"}
    assert report["filtered_by_reason"] == {"no_positive_label": 1} and accounted(report)


# ---- no release found: our own formats, as their registry entries document them -------------------

def test_pmc_instructqa_reads_the_documented_alpaca_list(tmp_path, curate):
    root = dataset(tmp_path, "pmc_instructqa")
    write_file(root, "pmc_instructqa.json", json.dumps([
        {"instruction": "Answer the question about the article.", "input": "Which receptor does the drug block?",
         "output": "The beta-1 adrenergic receptor."},
        {"instruction": "Summarise the abstract.", "input": "", "output": "A cohort study of 200 patients..."},
        {"instruction": "Broken record", "input": "no output field"}]))
    report = curate("pmc_instructqa")
    assert sorted(row["answer"] for row in kept_rows(report)) == [
        "A cohort study of 200 patients...", "The beta-1 adrenergic receptor."]
    assert report["quarantined"] == 1 and accounted(report)


def test_bacteria_reads_the_documented_image_and_mask_pairs(tmp_path, curate):
    from PIL import Image

    root = dataset(tmp_path, "bacteria")
    mask = np.zeros((24, 24), dtype=np.uint8)
    mask[1:4, 2:8], mask[10:20, 10:12] = 1, 2
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    write_file(root, "images/b001.png", png_bytes(24, 24, seed=1))
    write_file(root, "masks/b001.png", buffer.getvalue())
    write_file(root, "images/b002.png", png_bytes(24, 24, seed=2))  # its mask is missing
    report = curate("bacteria")
    [row] = kept_rows(report)
    assert sorted((b["x1"], b["y1"], b["x2"], b["y2"]) for b in row["boxes"]) == [(2, 1, 8, 4), (10, 10, 12, 20)]
    assert [q["reason"] for q in quarantine(report)] == ["missing_join_key"] and accounted(report)


PINNED_HELDOUT = ["b010", "b026", "b047"]  # computed once: a change of the hash would move every split


def test_the_held_out_split_is_a_stable_hash_and_the_two_parts_partition_the_records():
    from medmo_pipeline.data.adapters.common import AdapterOptions, other_part

    heldout = AdapterOptions(holdout_one_in=10, holdout_part="heldout")
    rest = AdapterOptions(holdout_one_in=10, holdout_part="rest")
    keys = [f"b{i:03d}" for i in range(400)]
    in_heldout = [key for key in keys if not other_part(key, heldout)]
    assert [key for key in keys if other_part(key, rest)] == in_heldout  # each record in exactly one part
    assert 20 <= len(in_heldout) <= 60  # about 1 in 10
    assert in_heldout[:3] == PINNED_HELDOUT  # the same share on every run and machine
    assert not other_part("b000", AdapterOptions())  # no split: every record is read


def test_medtrinity_training_leaves_out_the_share_its_benchmark_evaluates(tmp_path, curate):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medmo_pipeline.data.adapters.common import AdapterOptions, other_part

    ids = [f"8031efe0-{i}" for i in range(30000)]
    heldout = [i for i in ids if not other_part(i, AdapterOptions(holdout_one_in=10000, holdout_part="heldout"))]
    chosen = heldout[:1] + ids[:2]
    root = dataset(tmp_path, "medtrinity")
    (root / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{"image": {"bytes": png_bytes(seed=n), "path": f"{n}.jpg"}, "id": key,
                                           "caption": f"A CT scan {n}."} for n, key in enumerate(chosen)]),
                   root / "data" / "train-00000-of-00001.parquet")
    report = curate("medtrinity", "demo")  # the demo layout: images embedded
    assert sorted(row["id"].rsplit(":", 1)[1] for row in kept_rows(report)) == sorted(ids[:2])
    assert report["filtered_by_reason"] == {"subset": 1} and accounted(report)
