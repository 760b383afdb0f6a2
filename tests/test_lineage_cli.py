"""``medmo lineage``: the chain from a checkpoint back to the base model, as text and as JSON.

Most tests build a chain of checkpoint directories holding only ``lineage.json`` (no training); one
end-to-end test runs the small graph and checks the RL policy's chain against the checkpoints on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medmo_pipeline.cli import main

STAGES = ["base_model", "stage1", "stage2", "stage3", "rl"]
SOURCES = {"synth_xray": {"data_version": "aa11", "revision": "synthetic-v1"},
           "synth_cells": {"data_version": "bb22", "revision": "synthetic-v1"},
           "pmc_vqa": {"data_version": "cc33", "revision": "9f8e7d6c"}}


def _record(stage: str, index: int, parent: dict | None) -> dict:
    corpus = None if parent is None else {"data_version": "corpus-v1", "index_path": "/data/corpus/index.json",
                                          "sources": SOURCES}
    mixture = None if parent is None else {
        "recipe": {"sources": {"synth_xray": 1.0}},
        "drawn": {"synth_xray": {"grounding": 10 + index, "vqa": 4}, "synth_cells": {"caption": 3 * index}},
    }
    return {
        "stage": stage,
        "parent": parent,
        "corpus": corpus,
        "mixture": mixture,
        "recipe": {"name": "embedded-small", "hash": f"hash-{stage}", "resolved": {stage: {"lr": index}}},
        "git_commit": f"commit{index}",
        "mlflow_run_id": "" if parent is None else f"mlflow-{stage}",
        "dagster_run_id": "dagster-run-1",
        "started": f"2026-01-0{index + 1}T10:00:00Z",
        "ended": f"2026-01-0{index + 1}T11:00:00Z",
        "metrics": {"steps": index * 3},
        "data_version": f"weights-{stage}",
    }


def make_chain(root: Path) -> list[Path]:
    """base_model -> stage1 -> stage2 -> stage3 -> rl, oldest first."""
    paths, parent = [], None
    for index, stage in enumerate(STAGES):
        path = root / "checkpoints" / stage / f"v{index}"
        path.mkdir(parents=True)
        record = _record(stage, index, parent)
        (path / "lineage.json").write_text(json.dumps(record))
        paths.append(path)
        parent = {"path": str(path.resolve()), "stage": stage, "data_version": record["data_version"]}
    return paths


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["lineage", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def chain(tmp_path, monkeypatch) -> list[Path]:
    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    return make_chain(tmp_path)


def test_json_chain_matches_the_files_field_by_field(chain, capsys):
    code, out, _ = run_cli(capsys, str(chain[-1]), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["start"] == str(chain[-1].resolve())
    assert document["evaluation"] is None
    links = document["chain"]
    assert [link["stage"] for link in links] == list(reversed(STAGES))
    for link, path in zip(links, reversed(chain)):
        record = json.loads((path / "lineage.json").read_text())
        assert link["path"] == str(path.resolve())
        for field in ("stage", "data_version", "mlflow_run_id", "git_commit", "dagster_run_id", "started", "ended",
                      "parent", "corpus", "mixture", "metrics"):
            assert link[field] == record[field], (record["stage"], field)
        assert link["recipe"] == {"name": record["recipe"]["name"], "hash": record["recipe"]["hash"],
                                  "resolved": record["recipe"]["resolved"]}
    for link in links[:-1]:
        assert link["parent_matches"] is True
        assert link["parent_data_version_on_disk"] == link["parent"]["data_version"]
    assert links[-1]["parent"] is None and links[-1]["parent_matches"] is None
    assert links[0]["corpus"]["sources"]["pmc_vqa"] == {"data_version": "cc33", "revision": "9f8e7d6c"}


def _block(text: str, number: int) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"[{number}] "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("[")), len(lines))
    return lines[start:end]


def _field(block: list[str], label: str) -> str:
    line = next(line for line in block if line.startswith(f"    {label} "))
    return line[len(f"    {label}"):].strip()


def test_text_shows_every_link_and_field(chain, capsys):
    code, text, _ = run_cli(capsys, str(chain[-1]))
    assert code == 0
    assert text.splitlines()[0] == f"Lineage of {chain[-1].resolve()}"
    for number, path in enumerate(reversed(chain), 1):
        record = json.loads((path / "lineage.json").read_text())
        block = _block(text, number)
        assert block[0] == f"[{number}] {record['stage']}"
        assert _field(block, "path") == str(path.resolve())
        assert _field(block, "data version") == record["data_version"]
        assert _field(block, "recipe") == f"{record['recipe']['name']}  hash {record['recipe']['hash']}"
        assert _field(block, "mlflow run") == (record["mlflow_run_id"] or "-")
        assert _field(block, "git commit") == record["git_commit"]
        assert _field(block, "dagster run") == record["dagster_run_id"]
        assert _field(block, "started") == record["started"]
        assert _field(block, "ended") == record["ended"]
        # Aligned: every value in a link's block starts in the same column.
        fields = [line for line in block[1:] if line.startswith("    ") and not line.startswith("      ")
                  and line.strip() not in ("corpus sources", "mixture drawn")]
        columns = {len(line) - len(line[4:].split("  ", 1)[1].lstrip()) for line in fields}
        assert len(columns) == 1, block
        if record["parent"] is None:
            assert not any(line.startswith("    parent ") for line in block)
            assert "corpus sources" not in "\n".join(block)
            continue
        parent = record["parent"]
        assert _field(block, "parent") == f"{parent['stage']}  data version {parent['data_version']}"
        assert _field(block, "corpus") == f"data version {record['corpus']['data_version']}"
        rows = [line.split() for line in block if line.startswith("      ")]
        for name, info in SOURCES.items():
            assert [name, info["data_version"], info["revision"]] in rows
        for source, tasks in record["mixture"]["drawn"].items():
            for task, count in tasks.items():
                assert [source, task, str(count)] in rows


def test_a_missing_parent_says_which_link_broke(chain, capsys):
    (chain[1] / "lineage.json").unlink()
    chain[1].rmdir()
    code, out, err = run_cli(capsys, str(chain[-1]))
    assert code == 2 and out == ""
    assert "chain broken at link 3" in err
    assert f"stage2 at {chain[2].resolve()}" in err
    assert f"parent stage1 at {chain[1].resolve()} does not exist" in err


def test_a_parent_without_lineage_says_which_link_broke(chain, capsys):
    (chain[0] / "lineage.json").unlink()
    code, _, err = run_cli(capsys, str(chain[-1]), "--json")
    assert code == 2
    assert "chain broken at link 4 (stage1" in err and "has no lineage.json" in err


def test_a_directory_without_lineage_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, out, err = run_cli(capsys, str(tmp_path / "empty"))
    assert code == 2 and out == ""
    assert f"{tmp_path / 'empty'} has no lineage.json" in err


def test_a_path_that_does_not_exist_is_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err


def test_an_asset_key_without_a_dagster_instance_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code, _, err = run_cli(capsys, "rl_policy")
    assert code == 2
    assert "no Dagster instance" in err and str(tmp_path / "home" / "dagster") in err


def test_a_replaced_parent_is_flagged(chain, capsys):
    record = json.loads((chain[2] / "lineage.json").read_text())
    record["data_version"] = "weights-stage2-rerun"
    (chain[2] / "lineage.json").write_text(json.dumps(record))
    code, text, _ = run_cli(capsys, str(chain[-1]))
    assert code == 0
    assert "MISMATCH: the parent directory now holds weights-stage2-rerun" in "\n".join(_block(text, 2))
    document = json.loads(run_cli(capsys, str(chain[-1]), "--json")[1])
    assert [link["parent_matches"] for link in document["chain"]] == [True, False, True, True, None]


def test_an_evaluation_directory_leads_to_its_checkpoint(chain, tmp_path, capsys):
    evaluation = tmp_path / "eval" / "rl" / "v1"
    evaluation.mkdir(parents=True)
    record = {"checkpoint": {"path": str(chain[-1].resolve()), "stage": "rl", "data_version": "weights-rl"},
              "corpus": {"data_version": "corpus-v1"}, "recipe": {"name": "embedded-small", "hash": "hash-eval"},
              "mlflow_run_id": "mlflow-eval", "git_commit": "commit9", "data_version": "table-v1"}
    (evaluation / "lineage.json").write_text(json.dumps(record))
    document = json.loads(run_cli(capsys, str(evaluation), "--json")[1])
    assert document["evaluation"]["data_version"] == "table-v1"
    assert document["evaluation"]["checkpoint"] == record["checkpoint"]
    assert [link["stage"] for link in document["chain"]] == list(reversed(STAGES))
    text = run_cli(capsys, str(evaluation))[1]
    assert "evaluation" in text.splitlines()[3] and "hash-eval" in text


def test_a_hub_base_model_ends_the_chain(tmp_path, capsys):
    path = tmp_path / "stage1"
    path.mkdir()
    record = _record("stage1", 1, {"path": "Qwen/Qwen3-VL-2B-Instruct", "stage": "hub", "data_version": None})
    (path / "lineage.json").write_text(json.dumps(record))
    document = json.loads(run_cli(capsys, str(path), "--json")[1])
    assert [link["stage"] for link in document["chain"]] == ["stage1", "hub"]
    assert document["chain"][1]["path"] == "Qwen/Qwen3-VL-2B-Instruct"
