"""Dagster layer: the graph built from a recipe, its dependencies and code versions."""

from __future__ import annotations

import subprocess
import sys

import dagster as dg

from assets.definitions import build_definitions
from medmo_pipeline.config import load_recipe, resolve_recipe_path
from tests.conftest import ROOT, embedded_recipe_data, write_recipe


def _graph(path):
    defs = build_definitions(load_recipe(path), resolve_recipe_path(path))
    return defs, defs.resolve_asset_graph()


def test_graph_has_every_stage_in_order():
    _, graph = _graph("embedded")
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "corpus_sources", "corpus_shards", "stage1_mixture", "stage2_mixture", "stage3_mixture", "rl_mixture",
        "base_model", "stage1_checkpoint", "stage2_checkpoint", "stage3_checkpoint", "rl_policy",
        "base_model_eval_table", "stage1_checkpoint_eval_table", "stage2_checkpoint_eval_table",
        "stage3_checkpoint_eval_table", "rl_policy_eval_table", "stage_ablation",
    }
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    # Each stage also waits for its parent's evaluation, whose regression guard can stop it.
    assert parents["stage1_checkpoint"] == {"base_model", "base_model_eval_table", "stage1_mixture"}
    assert parents["stage2_checkpoint"] == {"stage1_checkpoint", "stage1_checkpoint_eval_table", "stage2_mixture"}
    assert parents["stage3_checkpoint"] == {"stage2_checkpoint", "stage2_checkpoint_eval_table", "stage3_mixture"}
    assert parents["rl_policy"] == {"stage3_checkpoint", "stage3_checkpoint_eval_table", "rl_mixture"}
    assert all(parents[f"{s}_mixture"] == {"corpus_shards"} for s in ("stage1", "stage2", "stage3", "rl"))
    assert parents["corpus_shards"] == {"corpus_sources"}
    assert len(parents["stage_ablation"]) == 5


def test_corpus_shards_has_one_partition_per_source_and_six_blocking_checks():
    defs, graph = _graph("embedded")
    corpus = graph.get(dg.AssetKey("corpus_shards"))
    assert corpus.partitions_def.get_partition_keys() == ["synth_cells", "synth_medqa", "synth_xray"]
    checks = {spec.name: spec.blocking for spec in defs.resolve_assets_def("corpus_shards").check_specs}
    assert checks == {"schema_valid": True, "quarantine_rate_ok": True, "no_eval_contamination": True,
                      "rows_match_manifest": True, "rows_accounted": True, "rows_kept": True}
    paper_defs, paper_graph = _graph("paper")
    assert len(paper_graph.get(dg.AssetKey("corpus_shards")).partitions_def.get_partition_keys()) == 45


def test_automation_is_declared_for_cheap_assets_only():
    _, graph = _graph("embedded")
    automated = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).automation_condition}
    assert automated == {"stage1_mixture", "stage2_mixture", "stage3_mixture", "rl_mixture",
                         "base_model_eval_table", "stage1_checkpoint_eval_table", "stage2_checkpoint_eval_table",
                         "stage3_checkpoint_eval_table", "rl_policy_eval_table"}


def test_code_version_chains_the_recipe_section_hashes():
    recipe = load_recipe("embedded")
    _, graph = _graph("embedded")
    versions = {k.to_user_string(): graph.get(k).code_version for k in graph.get_all_asset_keys()}
    assert versions["corpus_shards"] == recipe.section_hash("corpus")
    assert versions["base_model"] == recipe.section_hash("base_model")
    for stage in ("stage1", "stage2", "stage3"):
        assert versions[f"{stage}_checkpoint"] == recipe.chained_hash(stage)
    assert versions["rl_policy"] == recipe.chained_hash("rl")
    assert len(set(versions.values())) == len(versions), "two assets share a code version"


def _changed_code_versions(tmp_path, edit) -> set[str]:
    data = embedded_recipe_data()
    edit(data)
    _, before = _graph("embedded")
    _, after = _graph(write_recipe(tmp_path / "edited.yaml", data))
    return {k.to_user_string() for k in before.get_all_asset_keys()
            if before.get(k).code_version != after.get(k).code_version}


def test_editing_a_stage_recipe_changes_that_stage_and_everything_downstream(tmp_path):
    changed = _changed_code_versions(tmp_path, lambda d: d["stages"]["stage2"]["optim"].update(max_steps=999))
    assert changed == {"stage2_checkpoint", "stage2_checkpoint_eval_table", "stage3_checkpoint",
                       "stage3_checkpoint_eval_table", "rl_policy", "rl_policy_eval_table", "stage_ablation"}


def test_editing_the_rl_recipe_leaves_the_sft_stages_alone(tmp_path):
    changed = _changed_code_versions(tmp_path, lambda d: d["rl"]["optim"].update(max_steps=999))
    assert changed == {"rl_policy", "rl_policy_eval_table", "stage_ablation"}


def test_editing_the_evaluation_recipe_changes_only_the_evaluation_assets(tmp_path):
    changed = _changed_code_versions(tmp_path, lambda d: d["evaluation"].update(max_samples_per_task=7))
    assert changed == {"base_model_eval_table", "stage1_checkpoint_eval_table", "stage2_checkpoint_eval_table",
                       "stage3_checkpoint_eval_table", "rl_policy_eval_table", "stage_ablation"}


def test_definitions_load_from_the_workspace_module(monkeypatch):
    monkeypatch.delenv("MEDMO_RECIPE", raising=False)
    code = "import assets; print(len(list(assets.defs.resolve_asset_graph().get_all_asset_keys())))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "17"
    assert isinstance(dg.Definitions, type)


def test_malformed_recipe_fails_before_any_job_starts(tmp_path, medmo_home):
    data = embedded_recipe_data()
    data["stages"]["stage1"]["optim"]["learning_rate"] = "fast"
    bad = write_recipe(tmp_path / "bad.yaml", data)
    env = {**__import__("os").environ, "MEDMO_RECIPE": str(bad), "MEDMO_HOME": str(medmo_home)}
    out = subprocess.run([sys.executable, "-m", "medmo_pipeline.cli", "demo"], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)
    assert out.returncode != 0
    assert "bad.yaml" in out.stderr + out.stdout
    assert "stages.stage1.optim.learning_rate" in out.stderr + out.stdout
    assert not (medmo_home / "corpus").exists() and not (medmo_home / "models").exists()


def test_demo_cold_starts_every_job_itself(tmp_path):
    from tests.conftest import small_recipe_data

    home = tmp_path / "home"
    recipe = write_recipe(tmp_path / "small.yaml", small_recipe_data())
    env = {**__import__("os").environ, "MEDMO_RECIPE": str(recipe), "MEDMO_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)
    out = subprocess.run([sys.executable, "-m", "medmo_pipeline.cli", "demo", "--cold", "--select", "base_model"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    assert (home / "models" / "base").is_dir()
    assert not (home / "logs" / "warm-host.log").exists()  # no host was started
    command_logs = "".join(p.read_text() for p in sorted((home / "logs").glob("medmo-*.log")))
    assert "-m medmo_pipeline.training.base_model" in command_logs  # the launch line is logged ...
    assert "medmo_pipeline.launch.warm_host" not in command_logs  # ... and names no host
