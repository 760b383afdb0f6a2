"""Datasets that used to need a conversion of their release, read as shipped (ROCO's per-split
captions.txt, CheXpert's train.csv labels, TissueNet's .npz arrays, MedSG-188K's task JSON files),
and the entries with no published layout, read in the format their registry entry documents."""

# ruff: noqa: F811 (the curate fixture is imported from test_published_layouts and requested by name)
from __future__ import annotations

import io
import json

import numpy as np
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
