"""Which SFTConfig/GRPOConfig fields a recipe's ``optim.trainer_args`` may set.

Any field of the installed TRL's config class is accepted, except those the pipeline already sets
from its own recipe fields or owns outright (where it saves, seeds, reports): setting one of those
twice would leave a reader guessing which value won. TRL is imported only when a recipe sets
``trainer_args``, so recipes without them load as fast as before.
"""

from __future__ import annotations

from typing import Any

from medmo_pipeline.safe_yaml import refuse_other_than_true_or_false, refuse_yes_or_no

# Set by ``training.trainer_setup.trainer_arguments`` from recipe fields (optim.*), by the stage's stream
# (``training.streamed``), or owned by the pipeline.
SHARED_OWNED = frozenset({
    "output_dir", "learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
    "gradient_accumulation_steps", "warmup_steps", "warmup_ratio", "weight_decay", "adam_beta1", "adam_beta2",
    "lr_scheduler_type", "bf16", "use_cpu", "gradient_checkpointing", "activation_checkpointing", "logging_steps", "deepspeed", "seed",
    "data_seed", "report_to", "save_strategy", "save_steps", "save_total_limit", "disable_tqdm",
    "dataloader_num_workers", "ignore_data_skip",
    # How models are built and loaded: only base_model.trust_remote_code turns remote code on, and
    # weights load as safetensors (GRPO builds its reference model with model_init_kwargs)
    "model_init_kwargs", "trust_remote_code",
    # Checkpoints are the pipeline's assets, published where the run's lineage records them, not
    # pushed to a hub from inside a job (and a hub token in a recipe would be a secret in a file)
    "push_to_hub", "hub_model_id", "hub_strategy", "hub_private_repo", "hub_always_push",
    "hub_revision",
})
# Set by the SFT job (stage.max_length; the answer-only loss is part of the sample contract).
SFT_OWNED = frozenset({"max_length", "assistant_only_loss"})
# Set by the GRPO job from the recipe's rl.grpo section and reward list.
GRPO_OWNED = frozenset({
    "num_generations", "max_completion_length", "epsilon", "epsilon_high", "beta", "sync_ref_model",
    "ref_model_sync_steps", "ref_model_mixup_alpha", "loss_type", "scale_rewards", "temperature",
    "mask_truncated_completions", "reward_weights", "generation_kwargs", "shuffle_dataset",
})

# GRPOConfig fields that reuse or regroup completions across optimizer steps: the RL stream hands each
# prompt to exactly one optimizer step and records its position by step count (``training.streamed``).
GRPO_UNSUPPORTED = frozenset({"num_iterations", "steps_per_generation", "generation_batch_size"})


def trainer_config_class(rl: bool):
    from trl import GRPOConfig, SFTConfig

    return GRPOConfig if rl else SFTConfig


def owned_fields(rl: bool) -> frozenset[str]:
    return SHARED_OWNED | (GRPO_OWNED if rl else SFT_OWNED)


def check_trainer_args(trainer_args: dict[str, Any], *, rl: bool, where: str) -> None:
    """Raise ``ValueError`` naming ``where`` and each name that is not a field of the installed
    TRL's config class, or that the recipe sets through its own fields."""
    if not trainer_args:
        return
    import dataclasses

    config_class = trainer_config_class(rl)
    known = {f.name for f in dataclasses.fields(config_class) if f.init}
    unknown = sorted(set(trainer_args) - known)
    if unknown:
        import trl

        raise ValueError(f"{where}: {unknown} are not fields of {config_class.__name__} in the installed "
                         f"TRL {trl.__version__}")
    unsupported = sorted(set(trainer_args) & GRPO_UNSUPPORTED) if rl else []
    if unsupported:
        raise ValueError(f"{where}: {unsupported} reuse or regroup completions across optimizer steps; the RL "
                         "stage streams each prompt into exactly one step (and resumes by that count), so leave "
                         "them at TRL's defaults")
    owned = sorted(set(trainer_args) & owned_fields(rl))
    if owned:
        raise ValueError(f"{where}: {owned} are set by the recipe's own fields (optim, grpo, max_length) or "
                         "by the pipeline; set them there, not in trainer_args")
    _check_values(trainer_args, config_class, where)


def _check_values(trainer_args: dict[str, Any], config_class, where: str) -> None:
    """Each value as its config field's type takes it (a number for ``max_grad_norm``, finite; a
    bool for a flag): TRL keeps a string where a float belongs and fails at the first step."""
    import typing

    from pydantic import ValidationError

    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # noqa: BLE001 - a TRL whose annotations do not resolve here: names only
        return
    for name, value in trainer_args.items():
        refuse_yes_or_no(f"{where}.{name}", value, hints.get(name))
        refuse_other_than_true_or_false(f"{where}.{name}", value, hints.get(name))
        if (adapter := _adapter(hints.get(name))) is None:
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as error:
            raise ValueError(f"{where}.{name}: {error.errors()[0]['msg']} (got {value!r})") from None


def _adapter(annotation):
    """A validator of values of ``annotation`` (finite numbers only), or None for a type pydantic
    builds none for (that field's values are left to TRL)."""
    from pydantic import ConfigDict, TypeAdapter

    if annotation is None:
        return None
    try:
        return TypeAdapter(annotation, config=ConfigDict(allow_inf_nan=False))
    except Exception:  # noqa: BLE001 - pydantic raises several types for a type it cannot validate
        return None
