"""What the SFT and GRPO jobs share: rows -> trainer datasets, reporting, publishing a checkpoint."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from medmo_pipeline.atomic import file_sha256, staged_dir, write_json_atomic, write_text_atomic
from medmo_pipeline.config import OptimRecipe
from medmo_pipeline.plots import plot_training_curves
from medmo_pipeline.reply_format import ReplyFormat, asks_for_format, sft_turns

CURVE_KEYS = ["loss", "mean_token_accuracy", "entropy", "reward", "rewards/box/mean", "rewards/tag_count/mean",
              "grad_norm"]


def decode_images(row: dict) -> list:
    """A row's images as the model sees them (``pixels.model_image``); raises ImageError."""
    from medmo_pipeline.data.pixels import model_image

    return [model_image(img["bytes"], path=img.get("path") or "") for img in row["images"]]


def decodable_rows(rows: list[dict], log: Callable[[str], None] | None = None) -> tuple[list[dict], int]:
    """The rows whose images all decode with the model's decoder, and how many were skipped.

    One bad image never ends a job: its row is left out, counted, and named in ``log``. Images that
    the trainer's own decoding would not see as the model should (16-bit, palette, CMYK, alpha, an
    EXIF rotation) are re-encoded as 8-bit PNG of what ``decode_images`` gives; the rest keep
    their bytes.
    """
    ready = skip_undecodable(lambda row: row, log)
    kept = [row for row in map(ready, rows) if row is not None]
    return kept, len(ready.skipped)


def skip_undecodable(to_example: Callable[[dict], dict | None], log: Callable[[str], None] | None = None):
    """``to_example`` for rows one at a time (a stream) with ``decodable_rows``' rule: a row whose images
    do not decode gives None, its id is appended to the returned function's ``skipped`` and named in
    ``log``; the others reach ``to_example`` with model-ready images."""
    from medmo_pipeline.data.image_limits import ImageError
    from medmo_pipeline.data.pixels import model_image, needs_conversion

    def example(row: dict) -> dict | None:
        try:
            images = [_model_ready(image, model_image, needs_conversion) for image in row["images"]]
        except ImageError as error:
            example.skipped.append(row.get("id"))
            if log is not None:
                log(f"skipped row {row.get('id')}: {error}")
            return None
        return to_example(row if all(a is b for a, b in zip(images, row["images"])) else {**row, "images": images})

    example.skipped = []
    return example


def _model_ready(image: dict, model_image, needs_conversion) -> dict:
    decoded = model_image(image["bytes"], path=image.get("path") or "")
    if not needs_conversion(image["bytes"]):
        return image
    buffer = io.BytesIO()
    decoded.save(buffer, format="PNG", compress_level=1)
    return {**image, "bytes": buffer.getvalue()}


def prompt_text(row: dict) -> str:
    return row["messages"][0]["content"]


def target_text(row: dict) -> str:
    return row["messages"][-1]["content"]


def sft_dataset(rows: list[dict], reply_format: ReplyFormat = "plain"):
    """Sample rows -> TRL's conversational vision format; images decode lazily from PNG bytes.

    String contents are kept: TRL puts one image placeholder per image before the first user
    turn, which is exactly the sample contract's convention. Each exchange is put in the stage's
    ``reply_format`` (see ``medmo_pipeline.reply_format``).
    """
    features = sft_features()
    examples = [sft_example(row, reply_format) for row in rows]
    return in_memory_dataset({name: [e[name] for e in examples] for name in features}, features, rows,
                             variant=reply_format)


def sft_features():
    """Columns of an SFT example: PNG images (decoded when a batch is made) and chat turns."""
    import datasets

    return datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "messages": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
        }
    )


def sft_example(row: dict, reply_format: ReplyFormat = "plain") -> dict:
    """A sample row as an SFT example (``sft_features``), its exchanges in ``reply_format``."""
    return {"images": image_cells(row),
            "messages": formatted_messages(row["messages"], reply_format, asks_for_format(row["id"]))}


def formatted_messages(messages: list[dict], reply_format: ReplyFormat, ask: bool = True) -> list[dict]:
    """Chat turns with every (user, assistant) exchange in ``reply_format`` (``ask``: see ``sft_turns``)."""
    out = [{"role": m["role"], "content": m["content"]} for m in messages]
    for index, message in enumerate(out):
        if message["role"] == "assistant" and index and out[index - 1]["role"] == "user":
            out[index - 1]["content"], message["content"] = sft_turns(
                out[index - 1]["content"], message["content"], reply_format, ask)
    return out


def image_cells(row: dict) -> list[dict]:
    """A row's images as `datasets.Image` storage cells (PNG bytes, no path)."""
    return [{"bytes": img["bytes"], "path": None} for img in row["images"]]


def in_memory_dataset(columns: dict[str, list], features, rows: list[dict], variant: str = ""):
    """A `datasets.Dataset` over `columns`, built straight into Arrow with `features`' schema.

    `Dataset.from_dict` would fingerprint the table by pickling all of it (slow for a stage's few
    hundred MB of PNG bytes, in every job); the drawn rows' ids, in order, and ``variant`` (how
    their texts were rendered) identify it as well.
    """
    import hashlib

    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    table = pa.Table.from_pydict(columns, schema=features.arrow_schema)
    digest = hashlib.sha256(variant.encode() + b"\0") if variant else hashlib.sha256()
    for name in features:
        digest.update(name.encode() + b"\0")
    for row in rows:
        digest.update(str(row["id"]).encode() + b"\0")
    return datasets.Dataset(InMemoryTable(table), info=datasets.DatasetInfo(features=features),
                            fingerprint=digest.hexdigest()[:16])


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
        report_to="none",  # MLflow is logged by ReportingCallback, one run per job
        **save_arguments(optim),
        disable_tqdm=True,
        dataloader_num_workers=optim.dataloader_num_workers,
        **optim.trainer_args,  # further TRL fields, checked against the installed TRL at recipe load
    )


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


def training_dtype(optim: OptimRecipe):
    """bf16 where the recipe asks for it and a GPU trains; fp32 on CPU, where the trainer runs fp32."""
    import torch

    return torch.bfloat16 if optim.bf16 and torch.cuda.is_available() else torch.float32


def save_arguments(optim: OptimRecipe) -> dict[str, Any]:
    """Resumable checkpoints every ``save_steps`` (``resume`` marks them complete and keeps the newest)."""
    if optim.save_steps is None:
        return {"save_strategy": "no"}
    return {"save_strategy": "steps", "save_steps": optim.save_steps, "save_total_limit": None}


def deepspeed_config(name: str) -> Path:
    """A recipe's DeepSpeed file by name under ``recipes/deepspeed/`` (see ``config.deepspeed_config``)."""
    from medmo_pipeline.config import deepspeed_config as shipped

    return shipped(name)


def reporting_callback(reporter, mlflow_module, history: list[dict]):
    """A TrainerCallback that sends each log line to MLflow, the job reporter and ``history``."""
    from transformers import TrainerCallback

    class ReportingCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero:  # one report per step, not one per rank
                return
            numeric = {k: float(v) for k, v in (logs or {}).items() if isinstance(v, (int, float))}
            if not numeric:
                return
            history.append({"step": state.global_step, **numeric})
            mlflow_module.log_metrics({k.replace("/", "_"): v for k, v in numeric.items()},
                                      step=state.global_step)
            shown = {k: numeric[k] for k in ("loss", "reward", "mean_token_accuracy") if k in numeric}
            reporter.progress(state.global_step, state.max_steps, **shown)

    return ReportingCallback()


def weights_version(directory: Path) -> str:
    """Data version of a checkpoint: sha256 over its safetensors files (names and contents)."""
    import hashlib

    digest = hashlib.sha256()
    files = sorted(Path(directory).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{directory} has no .safetensors weights")
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_sha256(path).encode())
    return digest.hexdigest()


def publish_checkpoint(
    model, processor, final_dir: Path, *, lineage: dict, recipe_section: dict, history: list[dict], title: str,
    extra: Callable[[Path], object] | None = None, state_dict: dict | None = None,
) -> tuple[str, dict]:
    """Save model + processor (safetensors), recipe, lineage, curves; visible only when complete.

    ``extra(directory)`` writes further files (plots) into the checkpoint before it is published:
    nothing is written into a published checkpoint afterwards, where a concurrent publisher of the
    same directory could have replaced it. A failed write (disk full) raises an ``OSError`` naming
    ``final_dir`` and leaves it as it was. ``state_dict`` replaces the model's own weights (gathered
    from ZeRO-3 partitions). Returns (data version, lineage as written).
    """
    from medmo_pipeline.model.loading import save_model_and_processor

    with staged_dir(Path(final_dir)) as tmp:
        save_model_and_processor(model, processor, tmp, state_dict=state_dict)
        data_version = weights_version(tmp)
        lineage = {**lineage, "data_version": data_version}
        write_text_atomic(tmp / "recipe.yaml", yaml.safe_dump(recipe_section, sort_keys=False))
        write_json_atomic(tmp / "training_log.json", history)
        plot_training_curves(history, CURVE_KEYS, tmp / "training_curves.png", title)
        if extra is not None:
            extra(tmp)
        write_json_atomic(tmp / "lineage.json", lineage)
    return data_version, lineage


def parent_reference(parent: str) -> dict:
    """Lineage entry for the parent: a checkpoint directory we wrote, or a hub id."""
    path = Path(parent)
    lineage_file = path / "lineage.json"
    if lineage_file.is_file():
        info = json.loads(lineage_file.read_text())
        return {"path": str(path.resolve()), "stage": info.get("stage"), "data_version": info.get("data_version")}
    return {"path": parent, "stage": "hub", "data_version": None}


def gathered_state_dict(trainer) -> dict | None:
    """The full weights when DeepSpeed ZeRO-3 partitions them across ranks, else None (the model holds
    them). A collective: every rank calls it."""
    plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
    if plugin is None or plugin.zero_stage != 3:
        return None
    return trainer.accelerator.get_state_dict(trainer.deepspeed)


def resume_plan(args, optim: OptimRecipe, recipe_hash: str, corpus_data_version: str):
    """Where this stage saves and what it resumes from (see ``training.resume``)."""
    from medmo_pipeline.training import resume

    key = resume.ResumeKey(stage=args.stage, recipe_hash=recipe_hash, parent_data_version=parent_version(args.parent),
                           corpus_data_version=corpus_data_version, world_size=resume.world_size())
    return resume.plan(args.output, key, optim.on_mismatch, main_process=resume.is_main_process())


def parent_version(parent: str) -> str:
    """The parent's data version: from its lineage, its weights, or its hub id."""
    recorded = parent_reference(parent)["data_version"]
    if recorded:
        return recorded
    return weights_version(Path(parent)) if Path(parent).is_dir() else f"hub:{parent}"


@contextmanager
def main_process_mlflow_run(experiment: str, run_name: str, *, params: dict, tags: dict[str, str]):
    """One MLflow run per job: opened by the main process only (None on the other ranks)."""
    from medmo_pipeline import tracking
    from medmo_pipeline.training.resume import is_main_process

    if not is_main_process():
        yield None
        return
    with tracking.mlflow_run(experiment, run_name, params=params, tags=tags) as run:
        yield run


def elapsed(started: float) -> float:
    return round(time.time() - started, 2)


def training_argument_parser(description: str, *, default_stage: str | None = None):
    """Command line shared by the training entry points (Dagster's launcher passes the same)."""
    from medmo_pipeline.jobs import job_parser

    parser = job_parser(description)
    parser.add_argument("--stage", default=default_stage, required=default_stage is None,
                        help="stage name in the recipe")
    parser.add_argument("--parent", required=True, help="parent checkpoint directory or hub id")
    parser.add_argument("--corpus", required=True, type=Path, help="corpus index JSON (corpus_shards)")
    parser.add_argument("--output", required=True, type=Path, help="checkpoint directory to publish")
    return parser
