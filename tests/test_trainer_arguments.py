"""Recipe optimiser sections become the trainers' arguments."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from medmo_pipeline.config import OptimRecipe
from medmo_pipeline.training.trainer_setup import trainer_arguments


def test_dataloader_workers_reach_the_trainer_and_default_to_zero():
    optim = OptimRecipe(learning_rate=1e-3, per_device_train_batch_size=4)
    assert trainer_arguments(optim, output_dir=Path("out"), seed=1)["dataloader_num_workers"] == 0
    optim = OptimRecipe(learning_rate=1e-3, per_device_train_batch_size=4, dataloader_num_workers=3)
    assert trainer_arguments(optim, output_dir=Path("out"), seed=1)["dataloader_num_workers"] == 3
    with pytest.raises(ValidationError, match="dataloader_num_workers"):
        OptimRecipe(learning_rate=1e-3, per_device_train_batch_size=4, dataloader_num_workers=-1)


def _optim(**fields) -> OptimRecipe:
    return OptimRecipe(learning_rate=1e-3, per_device_train_batch_size=4, **fields)


def test_trainer_args_pass_further_trl_fields_to_the_trainer():
    arguments = trainer_arguments(_optim(trainer_args={"max_grad_norm": 0.5}), output_dir=Path("out"), seed=1)
    assert arguments["max_grad_norm"] == 0.5
    from trl import SFTConfig

    assert SFTConfig(**arguments).max_grad_norm == 0.5


def test_the_pipeline_owns_every_trainer_argument_it_sets():
    """trainer_args cannot set twice what the recipe's own fields set (the owned list keeps up with them)."""
    from medmo_pipeline.trainer_fields import owned_fields

    assert set(trainer_arguments(_optim(), output_dir=Path("out"), seed=1)) <= owned_fields(rl=False)
    assert set(trainer_arguments(_optim(), output_dir=Path("out"), seed=1)) <= owned_fields(rl=True)


def _recipe_with(tmp_path, stage: str, trainer_args: dict) -> Path:
    from tests.conftest import small_recipe_data, write_recipe

    data = small_recipe_data()
    section = data["rl"] if stage == "rl" else data["stages"][stage]
    section["optim"]["trainer_args"] = trainer_args
    return write_recipe(tmp_path / "recipe.yaml", data)


def test_recipe_load_checks_trainer_args_against_the_installed_trl(tmp_path):
    from medmo_pipeline.config import RecipeError, load_recipe

    recipe = load_recipe(_recipe_with(tmp_path, "rl", {"max_grad_norm": 0.3, "top_p": 0.9}))
    assert recipe.rl.optim.trainer_args == {"max_grad_norm": 0.3, "top_p": 0.9}
    with pytest.raises(RecipeError, match=r"stages\.stage1\.optim\.trainer_args: \['max_grad_nrom'\].*SFTConfig"):
        load_recipe(_recipe_with(tmp_path, "stage1", {"max_grad_nrom": 1.0}))
    # A GRPO-only field is not an SFT field.
    with pytest.raises(RecipeError, match=r"\['top_p'\] are not fields of SFTConfig"):
        load_recipe(_recipe_with(tmp_path, "stage1", {"top_p": 0.9}))
    with pytest.raises(RecipeError, match=r"rl\.optim\.trainer_args: \['learning_rate'\] are set by the recipe"):
        load_recipe(_recipe_with(tmp_path, "rl", {"learning_rate": 1.0}))


def test_attention_defaults_to_sdpa_without_flash_attn_and_refuses_flash_attention_here():
    import importlib.util

    import torch

    from medmo_pipeline.model.loading import attention_implementation

    assert _optim().attn_implementation == "auto"
    if importlib.util.find_spec("flash_attn") is None or not torch.cuda.is_available():
        assert attention_implementation("auto") == "sdpa"
        with pytest.raises(ValueError, match="flash_attention_2 needs the flash-attn package"):
            attention_implementation("flash_attention_2")
    assert attention_implementation("eager") == "eager"
    with pytest.raises(ValidationError, match="attn_implementation"):
        _optim(attn_implementation="flash")


def test_the_recipe_dtype_is_the_load_dtype_where_a_gpu_trains(monkeypatch):
    """No GPU here: CUDA's presence is faked for the dtype choice only."""
    import torch

    from medmo_pipeline.training.trainer_setup import training_dtype

    assert training_dtype(_optim(bf16=True)) == torch.float32  # CPU trains in fp32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_dtype(_optim(bf16=True)) == torch.bfloat16
    assert training_dtype(_optim(bf16=False)) == torch.float32


def test_a_policy_loads_with_the_recipe_attention_and_dtype(tmp_path):
    import torch

    from medmo_pipeline.config import BaseModelRecipe
    from medmo_pipeline.model.tiny import build_tiny_base_model
    from medmo_pipeline.training.trainer_setup import load_for_training

    base_dir = build_tiny_base_model(tmp_path / "base", texts=["lesion yes no"] * 50, spec={}, seed=1)
    base = BaseModelRecipe(source="tiny")
    model = load_for_training(str(base_dir), base, _optim(attn_implementation="eager"), trainer_config=None)
    assert model.config._attn_implementation == "eager"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    model = load_for_training(str(base_dir), base, _optim(), trainer_config=None)
    assert model.config._attn_implementation == "sdpa"
    # ZeRO-3 partitions at load only when the trainer configuration exists first.
    with pytest.raises(RuntimeError, match="deepspeed= before the model loads"):
        load_for_training(str(base_dir), base, _optim(deepspeed="zero3.json"), trainer_config=None)


@pytest.mark.parametrize("field", ["num_iterations", "steps_per_generation", "generation_batch_size"])
def test_rl_refuses_fields_that_reuse_completions_across_steps(field):
    from medmo_pipeline.trainer_fields import check_trainer_args

    with pytest.raises(ValueError, match=f"rl.optim.trainer_args: .*{field}.*one step"):
        check_trainer_args({field: 2}, rl=True, where="rl.optim.trainer_args")


@pytest.mark.parametrize("args", [{"model_init_kwargs": {"trust_remote_code": True, "use_safetensors": False}},
                                  {"push_to_hub": True}, {"hub_model_id": "someone/medmo"}])
def test_trainer_args_cannot_turn_on_remote_code_or_push_checkpoints(tmp_path, args):
    """GRPO builds its reference model with model_init_kwargs: remote code and pickled weights would get
    past base_model.trust_remote_code and the safetensors-only rule. Checkpoints are the pipeline's
    assets, not pushed to a hub from inside a job."""
    from medmo_pipeline.config import RecipeError, load_recipe

    with pytest.raises(RecipeError, match=rf"rl\.optim\.trainer_args: \['{next(iter(args))}'\] are set by the recipe"):
        load_recipe(_recipe_with(tmp_path, "rl", args))
