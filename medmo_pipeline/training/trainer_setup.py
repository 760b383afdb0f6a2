"""A stage's recipe -> its trainer configuration and its policy, under DeepSpeed or not.

SFT and GRPO share the optimiser section of a recipe (``OptimRecipe``), so both build their
``SFTConfig``/``GRPOConfig`` from ``trainer_arguments`` and load the policy with
``load_for_training``, in that order: a ZeRO-3 configuration must exist before the weights load so
that each rank only ever holds its partition. ``gathered_state_dict`` reassembles the weights for
publishing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medmo_pipeline.config import OptimRecipe


def trainer_arguments(optim: OptimRecipe, *, output_dir: Path, seed: int) -> dict[str, Any]:
    """Recipe optimiser section -> keyword arguments shared by SFTConfig and GRPOConfig."""
    import torch

    cuda = torch.cuda.is_available()
    deepspeed = None
    if optim.deepspeed:
        deepspeed = str(deepspeed_config(optim.deepspeed))
    return dict(
        output_dir=str(output_dir),
        learning_rate=optim.learning_rate,
        num_train_epochs=optim.num_train_epochs,
        max_steps=optim.max_steps,
        per_device_train_batch_size=optim.per_device_train_batch_size,
        gradient_accumulation_steps=optim.gradient_accumulation_steps,
        warmup_steps=optim.warmup_ratio,  # a float below 1 is a share of the total steps
        weight_decay=optim.weight_decay,
        adam_beta1=optim.adam_beta1,
        adam_beta2=optim.adam_beta2,
        lr_scheduler_type=optim.lr_scheduler_type,
        bf16=optim.bf16 and cuda,  # bf16 on CPU raises in the trainer; the recipe's value applies on GPUs
        use_cpu=not cuda,
        activation_checkpointing=optim.gradient_checkpointing,  # transformers 5's name for it
        logging_steps=optim.logging_steps,
        deepspeed=deepspeed,
        seed=seed,
        data_seed=seed,
        report_to="none",  # MLflow is logged by the stage's reporting callback, one run per job
        **save_arguments(optim),
        disable_tqdm=True,
        dataloader_num_workers=optim.dataloader_num_workers,
        **optim.trainer_args,  # further TRL fields, checked against the installed TRL at recipe load
    )


def save_arguments(optim: OptimRecipe) -> dict[str, Any]:
    """Resumable checkpoints every ``save_steps`` (``resume`` marks them complete and keeps the newest)."""
    if optim.save_steps is None:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": optim.save_steps, "save_total_limit": None}


def deepspeed_config(name: str) -> Path:
    """A recipe's DeepSpeed file by name under ``recipes/deepspeed/`` (see ``config.deepspeed_config``)."""
    from medmo_pipeline.config import deepspeed_config as shipped

    return shipped(name)


def training_dtype(optim: OptimRecipe):
    """bf16 where the recipe asks for it and a GPU trains; fp32 on CPU, where the trainer runs fp32."""
    import torch

    return torch.bfloat16 if optim.bf16 and torch.cuda.is_available() else torch.float32


def load_for_training(parent: str, base, optim: OptimRecipe, trainer_config):
    """Load the policy for a stage whose ``SFTConfig``/``GRPOConfig`` (``trainer_config``) already exists.

    With ``deepspeed=`` a ZeRO-3 config, creating the trainer config registered it (transformers keeps
    only a weak reference, so the caller keeps ``trainer_config`` alive through training), and
    ``from_pretrained`` then partitions each weight across the ranks as it loads: no rank ever holds
    the whole model. The weights load in the dtype the stage trains in. Under ZeRO-3 a text-only
    batch still runs the vision tower (``model.zero3_vision``).
    """
    from medmo_pipeline.model.loading import load_model

    if optim.deepspeed and getattr(trainer_config, "hf_deepspeed_config", None) is None:
        raise RuntimeError("the trainer configuration must be built with deepspeed= before the model loads")
    if trainer_config is not None:
        # Sets up the device and, under torchrun, the process group (transformers does it lazily).
        trainer_config.device  # noqa: B018
    if optim.deepspeed:
        join_deepspeed_to_process_group()
    model = load_model(parent, trust_remote_code=base.trust_remote_code, allow_pickle=base.allow_pickle,
                       dtype=training_dtype(optim), attn_implementation=optim.attn_implementation)
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():  # ranks must run the same modules (model.zero3_vision)
        from medmo_pipeline.model.zero3_vision import run_vision_tower_on_every_rank

        run_vision_tower_on_every_rank(model)
    return model


def join_deepspeed_to_process_group() -> None:
    """ZeRO-3 partitions over DeepSpeed's communicator, which on CPU is set up only once the trainer
    starts; before that it sees a world of one (and rejects the batch sizes filled in for two ranks).
    Wrapping the process group torchrun started is what the trainer would do later anyway."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        import deepspeed

        deepspeed.init_distributed(dist_backend=dist.get_backend())


def gathered_state_dict(trainer) -> dict | None:
    """The full weights when DeepSpeed ZeRO-3 partitions them across ranks, else None (the model holds
    them). A collective: every rank calls it."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        return None
    return trainer.accelerator.get_state_dict(trainer.deepspeed)
