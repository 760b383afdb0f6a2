"""The source registry: every dataset of the recipe, validated; clear errors for missing sources
and credentials; safe path joining."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from medmo_pipeline.data.registry import (
    REGISTRY_PATH,
    RegistryError,
    SourceUnavailable,
    load_registry,
    resolve_source,
)
from medmo_pipeline.safe_paths import UnsafePathError, safe_join

TRAINED = [  # the paper's datasets by role (docs/paper_recipe.md), in order (SLAKE once)
    "medtrinity", "iu_xray", "mimic_cxr", "chexpert", "chexpert_plus", "medpix_clinqa", "roco", "roco_v2",
    "fairvlmed", "vqa_med_2019", "pubmed_vision", "nih_vqa", "quilt_llava_pretrain", "mimic_ext_mimic_cxr_vqa",
    "vqa_rad", "pathvqa", "pmc_vqa", "slake", "ct_rate", "medqa", "pubmedqa", "pmc_oa", "medmcqa",
    "pmc_instructqa", "medquad", "medical_meadow_medqa", "chatdoctor_healthcaremagic_100k",
    "alpacare_medinstruct_52k", "chatdoctor_icliniq", "medreason", "mimic_iv_ext_bhc", "medical_r1_distill_data",
    "medical_o1_reasoning_sft", "meadow_pubmed_causal", "meadow_medical_flashcards", "meadow_medqa",
    "meadow_wikidoc", "medical_meadow_cord19", "nih_chest_xray", "deeplesion", "grazpedwri_dx", "deepcell",
    "bacteria", "ctc", "medsg",
]
INSIDE_MEDTRINITY = ["tcga", "valset", "mama_mia", "lld_mmri", "cpd", "cisc", "ct_rate_medtrinity", "kipa22", "ptcga"]


def test_registry_lists_every_dataset_of_the_recipe():
    registry = load_registry()
    assert len(TRAINED) == 45
    assert sorted(e.name for e in registry.trained()) == sorted(TRAINED)
    inside = [e for e in registry.datasets if e.part_of]
    assert sorted(e.name for e in inside) == sorted(INSIDE_MEDTRINITY)
    assert all(e.part_of == "medtrinity" and e.stages == [] for e in inside)


def test_stage_membership_follows_the_recipe():
    registry = load_registry()
    assert [e.name for e in registry.for_stage("stage1")] == ["medtrinity"]
    rl = {e.name for e in registry.for_stage("rl")}
    assert rl == {"nih_chest_xray", "deeplesion", "grazpedwri_dx", "deepcell", "bacteria", "ctc", "medsg", "slake"}
    assert all("grounding" in e.roles for e in registry.for_stage("rl"))
    assert all(e.modality == "text" or e.name == "pmc_oa" for e in registry.for_stage("stage3"))


def test_credentialed_datasets_say_which_credentials():
    registry = load_registry()
    physionet = {e.name for e in registry.datasets if e.credentials and e.credentials.provider == "PhysioNet"}
    assert {"mimic_cxr", "mimic_ext_mimic_cxr_vqa", "mimic_iv_ext_bhc"} <= physionet


def _bad_registry(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(REGISTRY_PATH.read_text())
    mutate(data["datasets"])
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda d: d[14].update(homepage="x"), "dataset 'vqa_rad', field homepage: Extra inputs are not permitted"),
    (lambda d: d[14]["adapters"][0]["options"].update(question_feld="q"),
     "dataset 'vqa_rad', field adapters.0.question_feld: Extra inputs are not permitted"),
    (lambda d: d[14]["adapters"][0].update(family="nope"), "unknown adapter family 'nope'"),
    (lambda d: d[2].pop("credentials"), "dataset 'mimic_cxr', field (entry): Value error, credentials_required"),
    (lambda d: d[1]["origin"].pop("instructions"), "dataset 'iu_xray', field origin"),
    (lambda d: d.append(dict(d[0])), "duplicate dataset names ['medtrinity']"),
    (lambda d: d[3].update(stages=["stage9"]), "dataset 'chexpert', field stages.0"),
])
def test_registry_errors_name_the_dataset_and_field(tmp_path, mutate, expected):
    with pytest.raises(RegistryError) as error:
        load_registry(_bad_registry(tmp_path, mutate))
    assert expected in str(error.value)


def test_missing_source_names_dataset_and_download_command(tmp_path):
    entry = load_registry().get("vqa_rad")
    with pytest.raises(SourceUnavailable, match=r"dataset 'vqa_rad' is not at .*vqa_rad \(missing\).*osf.io"):
        resolve_source(entry, tmp_path)
    hub = load_registry().get("pathvqa")
    with pytest.raises(SourceUnavailable, match=r"huggingface-cli download flaviagiammarino/path-vqa"):
        resolve_source(hub, tmp_path)
    (tmp_path / "vqa_rad").mkdir()
    assert resolve_source(entry, tmp_path) == tmp_path.resolve() / "vqa_rad"


def test_unset_credential_is_a_clear_error(tmp_path, monkeypatch):
    entry = load_registry().get("mimic_cxr")
    (tmp_path / "mimic_cxr").mkdir()
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    with pytest.raises(SourceUnavailable, match="dataset 'mimic_cxr' needs PhysioNet credentials.*PHYSIONET_USERNAME"):
        resolve_source(entry, tmp_path)
    monkeypatch.setenv("PHYSIONET_USERNAME", "someone")
    assert resolve_source(entry, tmp_path).name == "mimic_cxr"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_unreadable_source_is_a_clear_error(tmp_path):
    entry = load_registry().get("vqa_rad")
    (tmp_path / "vqa_rad").mkdir(mode=0)
    try:
        with pytest.raises(SourceUnavailable, match="dataset 'vqa_rad' .* not readable"):
            resolve_source(entry, tmp_path)
    finally:
        (tmp_path / "vqa_rad").chmod(0o755)


def test_safe_join_rejects_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("x")
    (root / "escape").symlink_to(tmp_path)
    (root / "inside").symlink_to(root / "sub")
    assert safe_join(root, "sub/a.png") == root.resolve() / "sub" / "a.png"
    assert safe_join(root, "inside/a.png").name == "a.png"
    assert safe_join(root, "sub\\a.png") == root.resolve() / "sub" / "a.png"
    for bad in ("../secret.txt", "sub/../../secret.txt", "/etc/passwd", "C:\\x.png", "..\\secret.txt",
                "escape/secret.txt", "", "a\x00b"):
        with pytest.raises(UnsafePathError):
            safe_join(root, bad)


def test_a_mirror_is_walked_in_the_order_of_its_sorted_paths_one_folder_at_a_time(tmp_path):
    """The data version's file walk: the same files, in the same order, as sorting every path of
    the mirror (what it did before, holding them all), so the versions already recorded stand."""
    import os

    from medmo_pipeline.data.sources import files_in_path_order

    for relative in ("a.txt", "a-b/x.png", "a/b/c.png", "a/b.png", "A/z", ".hidden", "b/.x", "b/a b.png",
                     "a0/1", "a/b/c/d/e.dcm", "\u00e9/x"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        if not (tmp_path / relative).exists():
            (tmp_path / relative).write_text(relative)
    (tmp_path / "a" / "link.png").symlink_to(tmp_path / "a.txt")  # a symlinked file: left out
    (tmp_path / "b" / "loop").symlink_to(tmp_path)  # a link back to the root: not walked again
    os.mkfifo(tmp_path / "b" / "pipe")  # not a regular file: left out
    expected = sorted(p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink())
    assert list(files_in_path_order(tmp_path)) == expected and len(expected) == 11
