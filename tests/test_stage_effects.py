"""Each stage's paired effect over its parent, its text summary and the demo's timing table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from medmo_pipeline.evaluation.ablation import build_stage_ablation
from medmo_pipeline.evaluation.effects import StagePlan, paired_interval, stage_effects
from medmo_pipeline.summary import effects_summary, timing_table

IDS = [f"s{i:03d}" for i in range(60)]


def _eval_dir(root: Path, name: str, grounding: np.ndarray, mcq: np.ndarray) -> Path:
    directory = root / name
    directory.mkdir(parents=True)
    rows = [{"checkpoint": name, "benchmark": "synthetic_heldout", "id": f"g{i}", "source": "synth_xray",
             "task": "grounding", "prediction": "", "reference": "lesion <box>[[1, 2, 3, 4]]</box>", "score": v}
            for i, v in enumerate(grounding)]
    rows += [{"checkpoint": name, "benchmark": "synthetic_heldout", "id": f"m{i}", "source": "synth_medqa",
              "task": "vqa", "prediction": "", "reference": "<think>one lesion, option B</think>B", "score": v}
             for i, v in enumerate(mcq)]
    pd.DataFrame(rows).to_parquet(directory / "predictions.parquet")
    pd.DataFrame([{"checkpoint": name, "benchmark": "synthetic_heldout", "metric": "grounding_mean_iou",
                   "value": float(np.mean(grounding)), "n": len(grounding), "ci_low": 0.0, "ci_high": 1.0,
                   "unparseable": 0, "empty": 0, "note": ""}]).to_parquet(directory / "table.parquet")
    return directory


def test_paired_interval_resolves_a_small_shift_that_separate_intervals_would_not():
    rng = np.random.default_rng(0)
    parent = rng.uniform(0, 1, 200)  # wide spread between samples
    child = parent + 0.02 + rng.normal(0, 0.01, 200)  # every sample a little better
    delta, low, high = paired_interval(child, parent)
    assert low > 0 and low < delta < high and abs(delta - 0.02) < 0.005
    # The same numbers unpaired: each mean's own interval is far wider than the shift.
    assert np.std(parent) / np.sqrt(200) * 1.96 > 0.03


def test_stage_effects_say_which_target_rose_and_which_guard_fell(tmp_path):
    rng = np.random.default_rng(1)
    base_iou = rng.uniform(0.2, 0.6, 80)
    mcq = (rng.random(40) < 0.3).astype(float)
    dirs = {"stage2": _eval_dir(tmp_path, "stage2", base_iou, mcq),
            "stage3": _eval_dir(tmp_path, "stage3", base_iou - 0.08, np.ones(40)),  # MCQ up, grounding down
            "rl": _eval_dir(tmp_path, "rl", base_iou - 0.08 + rng.normal(0, 0.02, 80), np.ones(40))}
    plans = [StagePlan("stage3", "stage2", "instructions", ["mcq_accuracy"], ["grounding_mean_iou"], 0.05),
             StagePlan("rl", "stage3", "boxes", ["grounding_mean_iou"], ["mcq_accuracy"], 0.05)]
    effects = stage_effects(dirs, plans).set_index(["stage", "metric"])
    assert effects.loc[("stage3", "mcq_accuracy"), "verdict"] == "rises"
    assert effects.loc[("stage3", "mcq_accuracy"), "n"] == 40
    assert effects.loc[("stage3", "grounding_mean_iou"), "verdict"] == "fell"  # -0.08 beyond the 0.05 margin
    assert effects.loc[("rl", "grounding_mean_iou"), "verdict"] == "no rise"  # noise only
    assert effects.loc[("rl", "mcq_accuracy"), "verdict"] == "kept"


def test_the_ablation_writes_the_effects_and_the_summary_names_each_stage_purpose(tmp_path):
    rng = np.random.default_rng(2)
    iou = rng.uniform(0, 0.5, 50)
    dirs = {name: _eval_dir(tmp_path / "eval", name, iou + 0.1 * i, np.full(20, min(1.0, 0.25 * i)))
            for i, name in enumerate(["base_model", "stage1", "stage2", "stage3", "rl"])}
    result = build_stage_ablation(dirs, tmp_path / "reports")
    assert result["effects_png"].stat().st_size > 10_000
    effects = pd.read_csv(result["effects_csv"])
    assert set(effects.stage) == {"stage1", "stage2", "stage3", "rl"}
    rl = effects[(effects.stage == "rl") & (effects.metric == "grounding_mean_iou")].iloc[0]
    assert rl.parent == "stage3" and rl.delta == pytest_approx(0.1) and rl.verdict == "rises"
    text = effects_summary(tmp_path / "reports", {"rl": "GRPO on lesion boxes"})
    assert "rl (from stage3) for: GRPO on lesion boxes" in text
    assert max(len(line) for line in text.splitlines()) <= 100


def pytest_approx(value):
    import pytest

    return pytest.approx(value, abs=1e-9)


def test_timing_table_sums_each_stage_from_the_dagster_step_lines(tmp_path):
    line = ('2026-12-05 22:04:{s:02d} +0000 - dagster - DEBUG - __ASSET_JOB - run - 1 - {step} - STEP_SUCCESS - '
            'Finished execution of step "{step}" in {took}.')
    (tmp_path / "medmo-corpus_shards_partition_synth_xray.log").write_text(
        line.format(s=1, step="corpus_shards", took="50.9s") + "\n")
    (tmp_path / "medmo-every_other_asset.log").write_text("\n".join([
        line.format(s=2, step="stage1_checkpoint", took="1m5s"),
        line.format(s=3, step="stage1_checkpoint_eval_table", took="7.0s"),
        line.format(s=4, step="rl_policy", took="233ms"), "unrelated line"]))
    table = timing_table(tmp_path, total=130)
    rows = {line.split()[0]: line for line in table.splitlines()}
    assert rows["corpus"].split()[1] == "51" and "xray 51" in rows["corpus"]
    assert rows["stage1"].split()[1] == "72" and "checkpoint 65" in rows["stage1"]
    assert rows["rl"].split()[1] == "0"
    assert "130" in rows["wall"]
