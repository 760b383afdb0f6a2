"""recipes/paper.yaml against the paper's facts (docs/paper_recipe.md), held here and not read back from
the recipe, so that any drift fails; every value the paper does not give is marked open with a reason;
and nothing in the repository cites a document outside it."""

from __future__ import annotations

import re
import subprocess

import pytest

from medmo_pipeline.config import RECIPES_DIR, load_recipe
from medmo_pipeline.reply_format import TAGS
from tests.conftest import ROOT

PAPER_YAML = RECIPES_DIR / "paper.yaml"
DOC = ROOT / "docs" / "paper_recipe.md"

# docs/paper_recipe.md, "The four stages": learning rate, batch per device, accumulation, epochs, pixels.
SFT_STAGES = {
    "stage1": {"learning_rate": 1e-5, "per_device_train_batch_size": 10, "gradient_accumulation_steps": 2,
               "num_train_epochs": 1, "max_pixels": 768 * 768, "parent": "base_model"},
    "stage2": {"learning_rate": 8e-6, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8,
               "num_train_epochs": 1, "max_pixels": 1280 * 1280, "parent": "stage1"},
    "stage3": {"learning_rate": 5e-6, "per_device_train_batch_size": 14, "gradient_accumulation_steps": 2,
               "num_train_epochs": 1, "max_pixels": None, "parent": "stage2"},
}
# "Base model and training setup": for every stage.
OPTIMISER = {"warmup_ratio": 0.1, "weight_decay": 0.1, "adam_beta1": 0.9, "adam_beta2": 0.999,
             "lr_scheduler_type": "cosine", "bf16": True}
# "The RL stage".
RL = {"num_generations": 8, "max_prompt_length": 2048, "max_completion_length": 1024, "epsilon": 0.15,
      "epsilon_high": 0.25, "loss_type": "dapo", "scale_rewards": "group"}
RL_OPTIM = {"num_train_epochs": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4}
RL_SOURCES = {"nih_chest_xray", "deeplesion", "grazpedwri_dx", "slake", "bacteria", "ctc", "medsg"}  # no DeepCell
RL_ROWS = 300_000
QWEN3_VL_PIXELS = (65_536, 16_777_216)  # the base model's processor bounds: dynamic resolution
REWARDS = ["box", "label_accuracy", "tag_count", "soft_overlong"]
# "Evaluation": Tables 1-3 (MedSG-Bench may be split into its sub-tasks).
BENCHMARKS = {
    "vqa": ["mmmu_med", "vqa_rad", "slake", "pathvqa", "pmc_vqa", "omnimedvqa", "medxpertqa_mm"],
    "text_qa": ["mmlu_med", "pubmedqa", "medmcqa", "medqa", "medbullets", "medxpertqa_text", "supergpqa"],
    "report": ["mimic_cxr", "chexpert_plus", "iu_xray", "medtrinity"],
    "grounding": ["nih_chest_xray", "deeplesion", "bacteria", "medsg"],
}
# Values the paper does not give: each must carry an "open:" mark on its line or the comment above it
# (four-space indents are the RL section's optimiser; the SFT stages' warm-up and decay are the paper's).
OPEN_VALUES = [
    r"revision: null", r"gradient_checkpointing: true", r"deepspeed: zero3\.json", r"guard: ",
    r"reply_format: think_answer", r"learning_rate: 1\.0e-6",
    r"^    warmup_ratio: 0\.1 ", r"^    weight_decay: 0\.1 ", r"overlong_prompts: truncate", r"beta: 0\.04",
    r"sync_ref_model: false", r"temperature: 1\.0", r"box: \{weight", r"label_accuracy: \{weight",
    r"soft_overlong: \{weight",
]


@pytest.fixture(scope="module")
def paper():
    return load_recipe("paper")


def test_base_model_and_seed(paper):
    assert paper.base_model.name_or_path == "Qwen/Qwen3-VL-8B-Instruct"
    assert paper.seed == 42


@pytest.mark.parametrize("name", list(SFT_STAGES))
def test_sft_stage_hyperparameters(paper, name):
    stage, facts = paper.stages[name], SFT_STAGES[name]
    optim = stage.optim.model_dump()
    assert {k: optim[k] for k in ("learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
                                  "num_train_epochs")} == {k: facts[k] for k in optim.keys() & facts.keys()}
    assert {k: optim[k] for k in OPTIMISER} == OPTIMISER
    assert optim["max_steps"] == -1  # whole epochs, never a step budget
    assert stage.image.max_pixels == facts["max_pixels"] and stage.parent == facts["parent"]


def test_rl_settings(paper):
    rl = paper.rl
    assert rl.parent == "stage3"
    assert {k: getattr(rl.grpo, k) for k in RL} == RL
    assert rl.grpo.beta > 0  # a KL term to a reference policy
    assert {k: getattr(rl.optim, k) for k in RL_OPTIM} == RL_OPTIM and rl.optim.max_steps == -1
    assert {k: getattr(rl.optim, k) for k in OPTIMISER if k != "weight_decay" and k != "warmup_ratio"} == {
        k: v for k, v in OPTIMISER.items() if k not in ("weight_decay", "warmup_ratio")}
    assert set(rl.mixture.sources) == RL_SOURCES and rl.mixture.max_samples == RL_ROWS
    assert (rl.image.min_pixels, rl.image.max_pixels) == QWEN3_VL_PIXELS
    assert rl.grpo.overlong_prompts in ("truncate", "drop")


def test_reward_list_and_the_papers_reward_settings(paper):
    rewards = paper.rl.rewards
    assert list(rewards) == REWARDS
    assert rewards["box"]["lambda_fn"] == rewards["box"]["lambda_fp"] == 0.0  # appendix A.1 defaults
    assert rewards["box"]["normalise_by"] == "ground_truth_extent"  # appendix A.1: H, W from the gold extents
    assert rewards["box"]["squared"] is False  # the appendix form
    assert rewards["soft_overlong"]["max_completion_len"] == RL["max_completion_length"]
    assert 0 < rewards["soft_overlong"]["soft_punish_cache"] < RL["max_completion_length"]
    # The tag reward counts the tags of the format RL prompts ask for, which stage 3 teaches.
    assert paper.rl.reply_format == paper.stages["stage3"].reply_format == "think_answer"
    assert TAGS == ("<think>", "</think>", "<answer>", "</answer>")


def test_paper_benchmarks_are_in_the_registry():
    from medmo_pipeline.data.benchmarks.registry import load_registry

    registry = load_registry()
    for names in BENCHMARKS.values():
        for name in names:
            assert any(b == name or b.startswith(f"{name}_") for b in registry.names()), name


def test_paper_recipe_evaluates_every_paper_benchmark(paper):
    evaluated = paper.evaluation.benchmarks
    for names in BENCHMARKS.values():
        for name in names:
            assert any(b == name or b.startswith(f"{name}_") for b in evaluated), name


def test_every_value_the_paper_does_not_give_is_marked_open():
    lines = PAPER_YAML.read_text().splitlines()
    unmarked = []
    for pattern in OPEN_VALUES:
        hits = [i for i, line in enumerate(lines) if re.search(pattern, line.split("#")[0] + " ")]
        assert hits, f"{pattern!r} no longer in paper.yaml: update this test and docs/paper_recipe.md"
        for i in hits:
            context = [lines[i]] + [line for line in lines[max(0, i - 3):i] if line.strip().startswith("#")]
            if not any("open:" in line for line in context):
                unmarked.append(f"line {i + 1}: {lines[i].strip()}")
    assert unmarked == []


def test_open_choices_are_documented():
    text = DOC.read_text()
    for setting in ("reward weights", "ZeRO-3", "box reward (H, W)", "label accuracy on box labels",
                    "soft overlong L and cache", "prompts over 2048 tokens", "KL coefficient"):
        assert setting in text, setting


def test_nothing_in_the_repository_cites_a_document_outside_it():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    offenders = []
    for name in files:
        path = ROOT / name
        if name == "tests/test_paper_recipe.py" or not path.is_file() or path.suffix in (".png", ".parquet"):
            continue
        text = path.read_text(errors="ignore")
        if re.search(r"MEDMO_RECIPE\.md|\.\./shared/|/work/shared", text):
            offenders.append(name)
    assert offenders == []
