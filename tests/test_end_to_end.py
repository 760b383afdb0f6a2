"""The whole graph on the embedded default (the recipe ``medmo demo`` runs), through the real CLI, a
real Dagster instance (sqlite under MEDMO_HOME) and a real MLflow store; then lineage is checked on
disk, and each stage's learning claim (what it is for, paired against its parent) is checked."""

from __future__ import annotations

import itertools
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHAIN = ["rl_policy", "stage3_checkpoint", "stage2_checkpoint", "stage1_checkpoint", "base_model"]
# Fake credentials with distinctive values, set for the whole run: none may show up anywhere it leaves.
FAKE_SECRETS = {name: f"{name.lower()}-{secrets.token_hex(16)}" for name in
                ("HF_TOKEN", "MLFLOW_TRACKING_PASSWORD", "MEDMO_PG_PASSWORD", "AWS_SECRET_ACCESS_KEY")}
# A plain variable that nothing reads: its value anywhere means something printed the whole environment.
ENV_CANARY = {"MEDMO_E2E_CANARY": f"canary-{secrets.token_hex(16)}"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    home = tmp / "home"
    # The embedded default itself: the learning claims below are about the recipe a user runs.
    env = {**os.environ, **FAKE_SECRETS, **ENV_CANARY, "MEDMO_HOME": str(home), "MEDMO_RECIPE": "embedded"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DAGSTER_HOME", None)
    out = subprocess.run([sys.executable, "-m", "medmo_pipeline.cli", "demo"], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=2400, check=False)
    (tmp / "demo.log").write_text(out.stdout + out.stderr)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]

    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    events = {}
    for key in instance.get_asset_keys():
        event = instance.get_latest_materialization_event(key)
        if event is not None:  # corpus_sources is observed, never materialized
            events[key.to_user_string()] = event
    # The terminal gets a line per job; each Dagster command's whole output is in its log under logs/.
    command_logs = "".join(p.read_text() for p in sorted((home / "logs").glob("medmo-*.log")))
    yield {"home": home, "env": env, "stdout": out.stdout, "log": out.stdout + out.stderr + command_logs,
           "events": events,
           "instance": instance,
           "partitions": partition_events(instance, "corpus_shards")}
    instance.dispose()


def partition_events(instance, key: str) -> dict:
    """Partition -> newest materialization event of that partition."""
    import dagster as dg

    out = {}
    for partition in instance.get_materialized_partitions(dg.AssetKey(key)):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1).records
        out[partition] = records[0].event_log_entry.dagster_event.event_specific_data.materialization
    return out


def _path(event) -> Path:
    meta = event.asset_materialization.metadata
    return Path((meta.get("path") or meta.get("index_path")).value)


def _version(event) -> str:
    return event.asset_materialization.tags["dagster/data_version"]


def test_every_partition_then_every_other_asset_materialized(demo_run):
    events = demo_run["events"]
    mixtures = {f"{stage}_mixture" for stage in ("stage1", "stage2", "stage3", "rl")}
    assert set(events) >= {*CHAIN, *mixtures, "stage_ablation", *(f"{c}_eval_table" for c in CHAIN)}
    assert set(demo_run["partitions"]) == {"synth_xray", "synth_cells", "synth_medqa"}
    # One run per corpus partition (a partitioned asset), then one run for the rest of the graph.
    assert len({e.run_id for name, e in events.items() if name != "corpus_shards"}) == 1


def test_jobs_started_as_forks_of_the_warm_host_which_stopped_after(demo_run):
    log, host_log = demo_run["log"], (demo_run["home"] / "logs" / "warm-host.log").read_text()
    assert "preloaded" in host_log, host_log
    assert "-m medmo_pipeline.launch.warm_host run --socket" in log
    # Jobs that start before the host has imported everything run cold; RL comes long after.
    assert "running medmo_pipeline.training.grpo cold" not in log
    socket = Path(host_log.split("[warm host] ")[1].split(":")[0])
    assert not socket.parent.exists()  # the demo stopped its host and removed its directory


def test_every_corpus_partition_passed_its_checks(demo_run):
    import dagster as dg

    instance = demo_run["instance"]
    for check in ("schema_valid", "quarantine_rate_ok", "no_eval_contamination", "rows_match_manifest", "rows_accounted",
                  "rows_kept"):
        key = dg.AssetCheckKey(dg.AssetKey("corpus_shards"), check)
        records = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
        assert len(records) == 3, check  # one per partition
        assert all(r.status.value == "SUCCEEDED" for r in records), check


def test_mixture_assets_show_rows_per_source_and_task_and_the_planned_samples(demo_run):
    from medmo_pipeline.data.corpus import load_index

    for stage in ("stage1", "stage2", "stage3", "rl"):
        meta = demo_run["events"][f"{stage}_mixture"].asset_materialization.metadata
        plan = load_index(Path(meta["index_path"].value))["plan"]
        assert meta["planned_samples"].value == plan["planned_samples"] > 0, stage
        table = meta["rows_by_source_and_task"].value
        for source, info in plan["sources"].items():
            assert f"| {source} | " in table and f"| {info['weighted_rows']} | {info['quota']} |" in table, stage
    rl = load_index(Path(demo_run["events"]["rl_mixture"].asset_materialization.metadata["index_path"].value))
    from medmo_pipeline.config import load_recipe

    assert rl["plan"]["planned_samples"] == load_recipe("embedded").rl.mixture.max_samples


def test_lineage_chain_from_the_rl_policy_back_to_the_base_model(demo_run):
    events = demo_run["events"]
    current = _path(events["rl_policy"])
    for child, parent in itertools.pairwise(CHAIN):
        lineage = json.loads((current / "lineage.json").read_text())
        assert Path(lineage["parent"]["path"]) == _path(events[parent]).resolve(), child
        assert lineage["parent"]["data_version"] == _version(events[parent])
        current = Path(lineage["parent"]["path"])
    assert json.loads((current / "lineage.json").read_text())["stage"] == "base_model"


def test_corpus_versions_in_every_lineage_are_the_curated_partitions_versions(demo_run):
    events, partitions = demo_run["events"], demo_run["partitions"]
    for name, mixture in zip(CHAIN[:-1], ["rl_mixture", "stage3_mixture", "stage2_mixture", "stage1_mixture"]):
        lineage = json.loads((_path(events[name]) / "lineage.json").read_text())
        assert lineage["corpus"]["data_version"] == _version(events[mixture]), name
        assert lineage["corpus"]["sources"], name
        for source, info in lineage["corpus"]["sources"].items():
            assert info["data_version"] == partitions[source].tags["dagster/data_version"], (name, source)
            assert info["revision"] == partitions[source].metadata["revision"].value
        meta = events[name].asset_materialization.metadata
        assert meta["corpus_data_version"].value == lineage["corpus"]["data_version"]
        assert meta["mlflow_run_id"].value == lineage["mlflow_run_id"]


def test_checkpoint_data_version_is_its_weights_hash_and_it_loads(demo_run):
    from medmo_pipeline.model.checkpoint import weights_version
    from medmo_pipeline.model.loading import load_model

    for name in CHAIN:
        path = _path(demo_run["events"][name])
        assert _version(demo_run["events"][name]) == weights_version(path)
    assert sum(p.numel() for p in load_model(_path(demo_run["events"]["rl_policy"])).parameters()) > 0


def test_mlflow_has_one_run_per_job_tagged_with_the_dagster_run(demo_run):
    import mlflow

    home = demo_run["home"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("medmo-embedded")
    runs = client.search_runs([experiment.experiment_id])
    dagster_run = demo_run["events"]["rl_policy"].run_id
    stages = sorted(r.data.tags["stage"] for r in runs)
    assert stages == sorted(["stage1", "stage2", "stage3", "rl"] + [f"eval:{c}" for c in
                                                                    ["base_model", "stage1", "stage2", "stage3", "rl"]])
    assert {r.data.tags["dagster_run_id"] for r in runs} == {dagster_run}
    rl = next(r for r in runs if r.data.tags["stage"] == "rl")
    assert rl.data.params["rl.grpo.loss_type"] == "dapo"
    assert any(k.startswith("rewards_box") for k in rl.data.metrics)


def test_stage_ablation_table_and_plot(demo_run):
    reports = demo_run["home"] / "reports"
    table = pd.read_csv(reports / "stage_ablation.csv", index_col="checkpoint")
    assert list(table.index) == ["base_model", "stage1", "stage2", "stage3", "rl"]
    for column in ("grounding_mean_iou", "grounding_acc_iou50", "closed_vqa_accuracy", "mcq_accuracy",
                   "report_rouge_l"):
        assert column in table.columns
    assert (reports / "stage_ablation.png").stat().st_size > 10_000
    summary = demo_run["stdout"].split("Headline scores", 1)[1]
    assert "\nrl " in summary and "grounding" not in summary.splitlines()[1]  # short names
    assert max(len(line) for line in summary.splitlines()[1:]) <= 100  # a terminal's width; the CSV has all


# What each stage of the embedded default is for, and how far its target must rise over its parent.
STAGE_CLAIMS = {("stage1", "caption_rouge_l"): 0.0, ("stage1", "closed_vqa_accuracy"): 0.0,
                ("stage2", "grounding_mean_iou"): 0.0, ("stage2", "report_rouge_l"): 0.0,
                ("stage3", "mcq_accuracy"): 0.0, ("stage3", "instruction_rouge_l"): 0.0,
                ("rl", "grounding_mean_iou"): 0.0}
# Levels the default seed reaches (docs/measurements.md: 0.466, 0.856, 0.774 on 2026-12-07).
LEVELS = {("stage2", "grounding_mean_iou"): 0.45, ("stage3", "mcq_accuracy"): 0.6,
          ("stage3", "instruction_rouge_l"): 0.6}


def test_each_stage_lifts_what_it_is_for_and_keeps_its_guards(demo_run):
    effects = pd.read_csv(demo_run["home"] / "reports" / "stage_effects.csv").set_index(["stage", "metric"])
    for key, lift in STAGE_CLAIMS.items():
        row = effects.loc[key]
        # The paired 95% interval over the same held-out samples lies above zero.
        assert row.role == "target" and row.ci_low > lift and row.verdict == "rises", (key, row.to_dict())
    for key, level in LEVELS.items():
        assert effects.loc[key, "value"] >= level, (key, effects.loc[key].to_dict())
    guards = effects[effects.role == "protected"]
    assert len(guards) >= 6 and (guards.verdict == "kept").all(), guards[guards.verdict != "kept"]
    summary = demo_run["stdout"]
    assert "What each stage was for and what it changed" in summary and "Where the seconds went" in summary
    assert "stage3 (from stage2) for: instructions and multiple choice" in summary
    assert (demo_run["home"] / "reports" / "stage_effects.png").stat().st_size > 10_000


def test_the_rl_policy_is_a_version_of_the_registered_model(demo_run):
    import mlflow

    home = demo_run["home"]
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    event = demo_run["events"]["rl_policy"]
    [version] = client.search_model_versions("name='medmo-policy'")  # the default registers the policy only
    assert event.asset_materialization.metadata["registered_model"].value == f"medmo-policy version {version.version}"
    assert version.source == _path(event).resolve().as_uri() and version.tags["stage"] == "rl"
    assert version.tags["data_version"] == _version(event)
    assert version.tags["parent_path"] == str(_path(demo_run["events"]["stage3_checkpoint"]).resolve())


def test_eval_table_matches_its_per_sample_predictions(demo_run):
    path = _path(demo_run["events"]["stage2_checkpoint_eval_table"])
    table = pd.read_parquet(path / "table.parquet").set_index("metric")
    predictions = pd.read_parquet(path / "predictions.parquet")
    grounding = predictions[predictions.task == "grounding"]
    assert table.loc["grounding_mean_iou", "value"] == pytest.approx(grounding.score.mean())
    assert table.loc["grounding_mean_iou", "n"] == len(grounding)
    assert table.loc["grounding_mean_iou", "ci_low"] <= table.loc["grounding_mean_iou", "value"]


def test_rl_policy_has_its_reward_plot_and_curves(demo_run):
    path = _path(demo_run["events"]["rl_policy"])
    assert (path / "box_reward_trend.png").is_file()
    assert (path / "training_curves.png").is_file()
    log = json.loads((path / "training_log.json").read_text())
    # Each logged step carries the rewards of the questions its batch drew (boxes, labels or both).
    logged = set().union(*log)
    assert {"rewards/box/mean", "rewards/label_accuracy/mean", "rewards/soft_overlong/mean"} <= logged, logged


def test_everything_lives_under_medmo_home(demo_run):
    home = demo_run["home"]
    for sub in ("corpus", "models", "checkpoints", "eval", "reports", "mlflow", "dagster"):
        assert (home / sub).is_dir(), sub
    assert not (ROOT / "mlruns").exists()


def test_medmo_lineage_of_the_rl_policy_matches_the_checkpoints_on_disk(demo_run):
    out = subprocess.run([sys.executable, "-m", "medmo_pipeline.cli", "lineage", "rl_policy", "--json"],
                         check=False, capture_output=True, text=True, cwd=ROOT, env=demo_run["env"], timeout=300)
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    events, partitions = demo_run["events"], demo_run["partitions"]
    links = document["chain"]
    assert [link["stage"] for link in links] == ["rl", "stage3", "stage2", "stage1", "base_model"]
    assert document["start"] == str(_path(events["rl_policy"]).resolve())
    for link, key in zip(links, CHAIN):
        event = events[key]
        path = _path(event).resolve()
        record = json.loads((path / "lineage.json").read_text())
        assert link["path"] == str(path), key
        assert link["data_version"] == record["data_version"] == _version(event), key
        assert link["recipe"]["name"] == record["recipe"]["name"] == "embedded"
        for field in ("mlflow_run_id", "git_commit", "dagster_run_id", "started", "ended", "parent", "corpus",
                      "mixture", "metrics"):
            assert link[field] == record[field], (key, field)
        assert link["recipe"]["hash"] == record["recipe"]["hash"], key
        assert link["recipe"]["resolved"] == record["recipe"]["resolved"], key
        assert link["dagster_run_id"] == event.run_id, key
        if key == "base_model":
            assert link["parent"] is None and link["corpus"] is None
            continue
        assert link["parent_matches"] is True, key
        assert link["mlflow_run_id"] == event.asset_materialization.metadata["mlflow_run_id"].value, key
        assert link["corpus"]["sources"], key
        for source, info in link["corpus"]["sources"].items():
            assert info["data_version"] == partitions[source].tags["dagster/data_version"], (key, source)
            assert info["revision"] == partitions[source].metadata["revision"].value, (key, source)
        assert sum(n for tasks in link["mixture"]["drawn"].values() for n in tasks.values()) > 0, key
    for child, parent in itertools.pairwise(links):
        assert child["parent"]["path"] == parent["path"]
        assert child["parent"]["data_version"] == parent["data_version"]


def _leaks(text: str | bytes, where: str) -> list[str]:
    needles = {**FAKE_SECRETS, **ENV_CANARY}
    data = text.encode() if isinstance(text, str) else text
    return [f"{name} in {where}" for name, value in needles.items() if value.encode() in data]


def test_no_secret_or_environment_dump_reaches_logs_events_mlflow_or_files(demo_run, tmp_path):
    import dagster as dg
    import mlflow

    home, instance = demo_run["home"], demo_run["instance"]
    leaks = _leaks((home.parent / "demo.log").read_bytes(), "the demo's console output")
    for run in instance.get_runs():  # every event of every run, asset metadata and check results included
        leaks += _leaks(dg.serialize_value(run), f"Dagster run {run.run_id}")
        for entry in instance.all_logs(run.run_id):
            leaks += _leaks(dg.serialize_value(entry), f"Dagster event log of run {run.run_id}")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert runs
    for run in runs:
        fields = {"params": run.data.params, "tags": run.data.tags, "metrics": list(run.data.metrics)}
        leaks += _leaks(json.dumps(fields), f"MLflow run {run.info.run_id} params/tags")
        artifacts = Path(mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, dst_path=str(tmp_path / run.info.run_id), tracking_uri=client.tracking_uri))
        leaks += [leak for path in artifacts.rglob("*") if path.is_file()
                  for leak in _leaks(path.read_bytes(), f"MLflow artifact {path.relative_to(tmp_path)}")]
    # Everything else the run left: lineage.json, recipe.yaml, compute logs, sqlite stores, plots, shards.
    files = [path for path in home.rglob("*") if path.is_file()]
    assert any(path.name == "lineage.json" for path in files)
    leaks += [leak for path in files for leak in _leaks(path.read_bytes(), str(path.relative_to(home)))]
    assert leaks == []
