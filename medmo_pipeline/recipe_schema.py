"""Recipes: the typed, frozen config objects a recipe YAML is validated into, and its shape check.

A recipe declares the whole four-stage run: base model, corpus, the SFT stages, the RL stage and
the evaluation. The embedded default and the paper recipe are two YAML files of the same shape;
the code path is the same. Every error names the file and the dotted path of the bad field.

This module sits below the data, model and rewards layers (docs/architecture.md), which use its
types, so it checks what it can see from here: types, ranges, the stage chain, shipped DeepSpeed
files, TRL field names, and mixture sources against the corpus (``load_recipe_shape``). The names a
recipe takes from the registries above it (sources, rewards, benchmarks) are resolved by
:func:`medmo_pipeline.config.load_recipe`, the loader everything above those layers uses.

Each section's hash (``section_hash``) is the code version of the asset it drives, so editing one
stage's recipe marks that stage and everything downstream stale, and nothing upstream.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from medmo_pipeline.reply_format import ReplyFormat
from medmo_pipeline.safe_paths import FileTooLarge, UnsafePathError, read_bounded, safe_join
from medmo_pipeline.safe_yaml import YamlRefused, read_yaml
from medmo_pipeline.schema.rows import MODEL_MAX_ASPECT_RATIO, TaskName
from medmo_pipeline.tracking import SECRET_VALUE
from medmo_pipeline.trainer_fields import check_trainer_args
from medmo_pipeline.yaml_registry import REGISTRY_MAX_NODES, SHIPPED_DIR, Strict

RECIPES_DIR = SHIPPED_DIR
DEFAULT_RECIPE = "embedded"
# Optimiser fields that decide how often a run saves and what it does with another run's leftovers,
# never what it learns: they stay out of the section hash, so editing them neither marks a stage
# stale nor stops an unfinished run from resuming.
RUN_CONTROL_FIELDS = frozenset({"save_steps", "on_mismatch"})
# A recipe is a few hundred YAML nodes; aliases may not expand it beyond this (a "billion laughs"
# alias bomb is refused from the node graph, before anything is built from it).
MAX_RECIPE_NODES = 20_000
MAX_TEXT = 2000  # a description or purpose: MLflow keeps a parameter of at most 6000 characters
# Upper bounds of the numbers that size a run's memory or time, far above any real recipe (the paper's
# largest: 18.5M samples, 20,000-row shards, 1,024-token completions): a value past one (10**30, a typo
# of a few zeros) would hold that many rows in memory, loop that long, or overflow an int64 in torch
MAX_PIXELS = 1 << 28  # an image's pixel budget (the processor's min_pixels / max_pixels)
MAX_TOKENS = 1 << 20  # a sequence length in tokens (the longest context models take is 1M)
MAX_STEPS = 10**9  # steps of a run, and so any "every N steps"
MAX_SAMPLES = 10**12  # samples in one pass of a mixture
MAX_ROWS_HELD = 1_000_000  # rows held in memory together (a shard being written, a shuffle window)
MAX_BATCH = 1 << 16  # a batch, an accumulation, a group of generations
STAGE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
# the run's other parts: a stage of one of these names would shadow it (``Recipe.section``, ``stage``)
RESERVED_STAGE_NAMES = frozenset({"base_model", "corpus", "rl", "evaluation", "tracking", "stages", "recipe",
                                  "seed", "name", "description"})


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the field."""


def _once(names: list[str]) -> list[str]:
    """``names``, refused when one is listed twice (a guard or score counted twice)."""
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"{repeated} listed more than once")
    return names


_Strict = Strict


class BaseModelRecipe(_Strict):
    source: Literal["tiny", "hub"]
    name_or_path: str | None = Field(None, description="hub id or local directory (source: hub)")
    revision: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = Field(False, description="accept pickle weights (never needed for safetensors)")
    tiny: dict[str, Any] = Field(default_factory=dict, description="architecture of the offline tiny model")
    tokenizer_training_rows: int = Field(2000, gt=0, le=MAX_ROWS_HELD, description="synthetic rows per source for the BPE")

    @model_validator(mode="after")
    def _needs_a_model(self) -> BaseModelRecipe:
        if self.source == "hub" and not self.name_or_path:
            raise ValueError("name_or_path is required when source is 'hub' (e.g. Qwen/Qwen3-VL-8B-Instruct)")
        return self


MAX_SYNTHETIC_ROWS = 10**8  # rows of one synthetic source, each generated in this process
SyntheticRows = Annotated[NonNegativeInt, Field(le=MAX_SYNTHETIC_ROWS)]


class SyntheticCorpusRecipe(_Strict):
    train_rows: dict[str, SyntheticRows] = Field(description="synthetic source -> rows (names resolved by "
                                                              "config.load_recipe)")
    eval_rows: dict[str, SyntheticRows]
    image_size: int = Field(128, ge=32, le=2048)


class RegistryCorpusRecipe(_Strict):
    """Real datasets from the source registry, read from local copies under ``data_root``."""

    registry: str | None = Field(None, description="registry YAML; default: the packaged recipes/sources.yaml")
    data_root: str = Field(min_length=1, description="directory holding each dataset's origin.local_dir; "
                                                     "${VAR} expands from the environment")
    sources: list[str] | None = Field(None, description="datasets to curate; default: every trained one")
    versions: dict[str, str] = Field(default_factory=dict, description="dataset -> published layout version "
                                     "to read (e.g. pmc_vqa: v1); default: the registry entry's current release")

    def registry_path(self) -> Path:
        return Path(self.registry) if self.registry else RECIPES_DIR / "sources.yaml"


class ImageLimitsRecipe(_Strict):
    """The cost bound of one image file (``data.image_limits.ImageLimits``), read from its header
    before any pixel is decoded."""

    max_pixels: int = Field(64_000_000, gt=0, description="pixels per file, every frame counted")
    min_side: int = Field(8, gt=0)
    max_aspect_ratio: float = Field(50.0, gt=1, le=MODEL_MAX_ASPECT_RATIO,
                                    description="the model's processor refuses a more elongated image than 200:1")
    max_jpeg_scans: int = Field(100, gt=0, description="scans per JPEG: each one decodes the whole image again")
    max_chunks: int = Field(100_000, ge=100, description="chunks per PNG, segments before the first scan per "
                                                         "JPEG, values per TIFF tag, elements per DICOM data "
                                                         "set: each is a step of the decoder")
    max_file_bytes: int = Field(256 << 20, gt=0, description="bytes per image file, from its declared size "
                                                             "before it is read")


class CorpusRecipe(_Strict):
    kind: Literal["synthetic", "registry"]
    synthetic: SyntheticCorpusRecipe | None = None
    registry: RegistryCorpusRecipe | None = Field(
        None, description="real datasets; with kind 'synthetic' they are curated beside the synthetic sources")
    shard_rows: int = Field(2000, gt=0, le=MAX_ROWS_HELD)
    max_quarantine_rate: float = Field(0.05, ge=0, le=1, description="asset check: share of rows quarantined")
    image_limits: ImageLimitsRecipe = ImageLimitsRecipe()
    curation_parts: int = Field(1, ge=1, le=1024, description="processes that curate one large source side by side")
    split_above_bytes: int = Field(8 * 2**30, gt=0, description="a source whose input is larger is curated in "
                                                                "curation_parts parts (data.curation.parts)")

    @model_validator(mode="after")
    def _kind_has_its_section(self) -> CorpusRecipe:
        if self.kind == "synthetic" and self.synthetic is None:
            raise ValueError("kind 'synthetic' needs a 'synthetic' section (train_rows, eval_rows)")
        if self.kind == "registry" and self.registry is None:
            raise ValueError("kind 'registry' needs a 'registry' section (data_root, sources)")
        return self

    def synthetic_sources(self) -> list[str]:
        spec = self.synthetic
        return sorted(set(spec.train_rows) | set(spec.eval_rows)) if spec else []

    def registry_sources(self) -> list[str]:
        """Registry datasets to curate (every trained one when the recipe lists none)."""
        if self.registry is None:
            return []
        if self.registry.sources is not None:
            return list(self.registry.sources)
        return trained_registry_names(self.registry.registry_path())

    def source_names(self) -> list[str]:
        """Every source the corpus curates: one ``corpus_shards`` partition each."""
        return [*self.synthetic_sources(), *self.registry_sources()]

    def _registry_path(self) -> tuple:
        return (Path(self.registry.registry),) if self.registry and self.registry.registry else ()


def trained_registry_names(path: Path) -> list[str]:
    """The datasets of a source registry trained on directly (no ``part_of``), read by name only: the
    entries themselves are validated by ``data.registry.load_registry`` (``config.load_recipe`` runs it)."""
    try:
        data = read_yaml(path, max_nodes=REGISTRY_MAX_NODES)
        return [entry["name"] for entry in data["datasets"] if entry.get("part_of") is None]
    except OSError as error:  # its reason alone: the path is named here
        raise ValueError(f"registry {path}: cannot read its dataset names ({error.strerror or error})") from None
    except (YamlRefused, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"registry {path}: cannot read its dataset names ({type(error).__name__}: {error})") from None


MAX_WEIGHT = 1e9  # a source's relative share
MAX_TASK_REPEATS = 100  # a row of one task seen this many times in a pass


class MixtureRecipe(_Strict):
    """Which rows a stage trains on: sources, restricted to some tasks, and how many samples.

    ``sources`` as a list is the paper's single epoch: one pass over each source, so each weighs as
    much as its eligible rows. As a mapping ``source -> weight`` the shares are explicit instead:
    source ``s`` gets ``planned * w_s / sum(w)`` samples (several passes over a small source, part of
    a large one). ``max_samples`` sizes one pass of the mixture (default: every eligible row once,
    task weights applied; with a list it only caps, scaling every source down alike);
    ``data.mixture.plan`` turns this into the stage's counts.
    """

    sources: list[str] | dict[str, float] = Field(
        min_length=1, description="a list: one pass over each (weight = its rows); a mapping: source -> relative weight")
    tasks: list[TaskName] = Field(min_length=1)
    max_samples: int | None = Field(None, gt=0, le=MAX_SAMPLES, description="samples in one pass of the mixture (default: its rows)")
    task_weights: dict[TaskName, float] = Field(default_factory=dict, description="oversampling by task")
    shuffle_window: int = Field(1024, gt=0, le=MAX_ROWS_HELD, description="rows of a shard shuffled together while streaming; "
                                                        "each source holds one window in memory")
    declared_samples: int | None = Field(None, gt=0, le=MAX_SAMPLES, description="the stage's size as its reference reports it "
                                                                 "(shown beside the planned count, not enforced)")
    open: dict[str, str] = Field(default_factory=dict, description="field -> why its value is a choice here "
                                                                   "(what the reference leaves open)")

    @model_validator(mode="after")
    def _positive_weights(self) -> MixtureRecipe:
        weights = self.sources.values() if isinstance(self.sources, dict) else []
        if any(w <= 0 for w in [*weights, *self.task_weights.values()]):
            raise ValueError("source and task weights must be > 0 (leave a source out instead of weighting it 0)")
        if any(w > MAX_WEIGHT for w in weights):  # their sum would overflow: every share 0, the stream divides by 0
            raise ValueError(f"source weights are relative shares: at most {MAX_WEIGHT:g}")
        # a task's weight is how often each of its rows is repeated in a pass
        if odd := {task: w for task, w in self.task_weights.items() if w != int(w) or w > MAX_TASK_REPEATS}:
            raise ValueError(f"task_weights {odd}: each is how often a row of that task repeats in a pass, a whole "
                             f"number from 1 to {MAX_TASK_REPEATS}")
        if unused := sorted(set(self.task_weights) - set(self.tasks)):
            raise ValueError(f"task_weights {unused} weight tasks the mixture does not train (tasks: {self.tasks})")
        if isinstance(self.sources, list) and len(set(self.sources)) != len(self.sources):
            raise ValueError(f"sources lists a dataset twice: {self.sources}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks lists a task twice: {self.tasks}")
        unknown = sorted(set(self.open) - set(type(self).model_fields))
        if unknown:
            raise ValueError(f"open: {unknown} are not mixture fields")
        return self

    def source_names(self) -> list[str]:
        return list(self.sources)

    def weights(self) -> dict[str, float] | None:
        """Explicit relative weights, or None for the single pass over each source."""
        return dict(self.sources) if isinstance(self.sources, dict) else None


class ImageRecipe(_Strict):
    """Stage resolution, in pixels (the processor resizes within these bounds)."""

    max_pixels: int | None = Field(None, gt=0, le=MAX_PIXELS, description="None keeps the parent checkpoint's "
                                                                     "processor bounds")
    min_pixels: int | None = Field(None, gt=0, le=MAX_PIXELS)

    @model_validator(mode="after")
    def _min_within_max(self) -> ImageRecipe:
        if self.min_pixels is not None and self.max_pixels is not None and self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) is above max_pixels ({self.max_pixels})")
        return self


class OptimRecipe(_Strict):
    """Trainer arguments shared by the SFT and GRPO stages (names follow transformers/TRL)."""

    learning_rate: float = Field(gt=0, le=1)
    num_train_epochs: float = Field(1.0, gt=0, le=10_000)
    max_steps: int = Field(-1, ge=-1, le=MAX_STEPS, description="> 0 overrides epochs; -1 trains by epochs")
    per_device_train_batch_size: int = Field(gt=0, le=MAX_BATCH)
    gradient_accumulation_steps: int = Field(1, gt=0, le=MAX_BATCH)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    # decoupled decay scales each weight by 1 - learning_rate * weight_decay: within [0, 1] for both <= 1
    weight_decay: float = Field(0.1, ge=0, le=1)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    bf16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = Field(10, gt=0, le=MAX_STEPS)
    deepspeed: str | None = Field(None, description="DeepSpeed JSON under recipes/deepspeed/")
    save_steps: int | None = Field(None, gt=0, le=MAX_STEPS, description="save a resumable checkpoint every N steps "
                                                           "(None: only the published final checkpoint)")
    dataloader_num_workers: int = Field(0, ge=0, le=256, description="processes that decode and collate batches "
                                                             "while the model steps (0: in the training process)")
    on_mismatch: Literal["fresh", "error"] = Field(
        "fresh", description="an unfinished run of this stage with another recipe, parent or data exists: "
                             "start fresh beside it, or stop with an error naming what differs")
    attn_implementation: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        "auto", description="attention kernel the model loads with; auto: flash_attention_2 where the "
                            "flash-attn package and a GPU are present, else sdpa")
    trainer_args: dict[str, Any] = Field(
        default_factory=dict, description="further SFTConfig/GRPOConfig fields by name, checked against the "
                                          "installed TRL when the recipe loads (e.g. max_grad_norm, use_vllm)")

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, steps: int) -> int:
        if steps == 0:  # the trainer reads 0 as "by epochs", which a recipe saying 0 steps does not mean
            raise ValueError("0 steps: give a number of steps > 0, or -1 to train by num_train_epochs")
        return steps

    @field_validator("deepspeed")
    @classmethod
    def _deepspeed_is_shipped(cls, name: str | None) -> str | None:
        if name is not None:
            try:
                deepspeed_config(name)
            except OSError as error:  # a ValueError is what pydantic reports with the field
                raise ValueError(str(error)) from None
        return name


class GuardRecipe(_Strict):
    """Regression guard: metrics this stage must not lose against its parent (catastrophic forgetting)."""

    protected: list[str] = Field(default_factory=list, description="eval metric names, e.g. grounding_mean_iou")

    @field_validator("protected")
    @classmethod
    def _named_once(cls, names: list[str]) -> list[str]:
        return _once(names)
    margin: float = Field(0.05, ge=0, description="allowed drop below the parent's value")


class _StageRecipe(_Strict):
    """What every training stage declares: its parent checkpoint, data, resolution and optimiser."""

    parent: str
    purpose: str = Field("", max_length=MAX_TEXT)
    guard: GuardRecipe = GuardRecipe()
    mixture: MixtureRecipe
    image: ImageRecipe = ImageRecipe()
    optim: OptimRecipe


class SFTStageRecipe(_StageRecipe):
    max_length: int | None = Field(None, gt=0, le=MAX_TOKENS)
    reply_format: ReplyFormat = Field("plain", description="how replies are taught (medmo_pipeline.reply_format)")


class GRPORecipe(_Strict):
    num_generations: int = Field(ge=2, le=MAX_BATCH)
    max_prompt_length: int | None = Field(None, gt=0, le=MAX_TOKENS)
    overlong_prompts: Literal["truncate", "drop"] = Field(
        "drop", description="a prompt over max_prompt_length tokens: cut its question text from the left "
                            "(a prompt whose images alone are too long is dropped) or drop the row; counted")
    max_completion_length: int = Field(gt=0, le=MAX_TOKENS)
    epsilon: float = Field(0.2, gt=0, le=1)
    epsilon_high: float | None = Field(None, gt=0, le=1)
    beta: float = Field(0.0, ge=0, le=10, description="KL coefficient; > 0 keeps a reference policy")
    # The reference policy is the parent checkpoint (the policy at the start of RL); with
    # sync_ref_model it is pulled towards the current policy every ref_model_sync_steps (TR-DPO style).
    sync_ref_model: bool = False
    ref_model_sync_steps: int = Field(512, gt=0, le=MAX_STEPS)
    ref_model_mixup_alpha: float = Field(0.6, ge=0, le=1)
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = "dapo"
    scale_rewards: Literal["group", "batch", "none"] = "group"
    temperature: float = Field(1.0, gt=0, le=10)
    mask_truncated_completions: bool = False

    @model_validator(mode="after")
    def _clip_range(self) -> GRPORecipe:
        if self.epsilon_high is not None and self.epsilon_high < self.epsilon:
            raise ValueError(f"epsilon_high ({self.epsilon_high}) is below epsilon ({self.epsilon}): DAPO's "
                             "clip-higher widens the upper clip, it never narrows it")
        return self


class RLStageRecipe(_StageRecipe):
    reply_format: ReplyFormat = Field("plain", description="the format RL prompts ask for (medmo_pipeline.reply_format)")
    grpo: GRPORecipe
    rewards: dict[str, dict[str, Any]] = Field(min_length=1, description="reward name -> params (weight, ...); "
                                               "resolved against the reward registry by config.load_recipe")
    completion_log_every: int = Field(20, gt=0, le=MAX_STEPS, description="log sampled completions every N steps")


class EvaluationRecipe(_Strict):
    benchmarks: list[str] = Field(["synthetic_heldout"], min_length=1, description="built-in or registry "
                                  "benchmarks (resolved by config.load_recipe); the regression guards read them")
    batch_size: int = Field(32, gt=0, le=MAX_BATCH)
    max_new_tokens: dict[TaskName, Annotated[PositiveInt, Field(le=MAX_TOKENS)]] = Field(default_factory=dict)
    max_samples_per_task: int | None = Field(None, gt=0, le=MAX_SAMPLES)
    bootstrap_resamples: int = Field(1000, ge=0, le=100_000)

    @field_validator("benchmarks")
    @classmethod
    def _named_once(cls, names: list[str]) -> list[str]:
        return _once(names)


class TrackingRecipe(_Strict):
    experiment: str = Field("medmo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$",
                            description="MLflow experiment; also a folder name under MEDMO_HOME")
    # Which checkpoints become versions of the MLflow registered model: the RL policy, or every stage.
    register_models: Literal["rl", "all", "none"] = "rl"


class Recipe(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    description: str = Field("", max_length=MAX_TEXT)
    seed: int = Field(42, ge=0, le=2**32 - 1)  # what transformers.set_seed takes
    base_model: BaseModelRecipe
    corpus: CorpusRecipe
    stages: dict[str, SFTStageRecipe]
    rl: RLStageRecipe
    evaluation: EvaluationRecipe = EvaluationRecipe()
    tracking: TrackingRecipe = TrackingRecipe()

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, stages: dict) -> dict:
        """A stage's name is an asset key, a folder under MEDMO_HOME and a key of the recipe's
        sections: a word, and none of the names the run gives its other parts."""
        for name in stages:
            if not STAGE_NAME.fullmatch(name):
                raise ValueError(f"stage name {name!r} is not a word of letters, digits and '_' (it names an "
                                 "asset and a folder)")
            if name in RESERVED_STAGE_NAMES:
                raise ValueError(f"stage name {name!r} is reserved for another part of the run")
        return stages

    @model_validator(mode="after")
    def _mixtures_name_corpus_sources(self) -> Recipe:
        try:
            known = set(self.corpus.source_names())  # with no list, every trained registry dataset
        except ValueError as error:  # the registry file could not be read
            raise ValueError(f"corpus.registry.registry: {error}") from None
        for name in [*self.stages, "rl"]:
            unknown = sorted(set(self.stage(name).mixture.sources) - known)
            if unknown:
                prefix = "rl" if name == "rl" else f"stages.{name}"
                raise ValueError(f"{prefix}.mixture.sources: {unknown} are not corpus sources (known: {sorted(known)})")
        return self

    @model_validator(mode="after")
    def _trainer_args_are_trl_fields(self) -> Recipe:
        for name in [*self.stages, "rl"]:
            check_trainer_args(self.stage(name).optim.trainer_args, rl=name == "rl",
                               where="rl.optim.trainer_args" if name == "rl" else f"stages.{name}.optim.trainer_args")
        return self

    @model_validator(mode="after")
    def _parents_form_a_chain(self) -> Recipe:
        known = {"base_model"}
        for name, stage in self.stages.items():
            if stage.parent not in known:
                raise ValueError(
                    f"stages.{name}.parent: {stage.parent!r} is not an earlier stage or 'base_model' "
                    f"(known: {sorted(known)})"
                )
            known.add(name)
        if self.rl.parent not in known:
            raise ValueError(f"rl.parent: {self.rl.parent!r} is not a stage (known: {sorted(known)})")
        return self

    @property
    def offline(self) -> bool:
        """Jobs never reach for a hub: the embedded default's tiny base model is built here."""
        return self.base_model.source == "tiny"

    def checkpoints(self) -> list[str]:
        """Every checkpoint of the run in training order: base_model, SFT stages, then 'rl'."""
        return ["base_model", *self.stages, "rl"]

    def stage(self, name: str) -> SFTStageRecipe | RLStageRecipe:
        return self.rl if name == "rl" else self.stages[name]

    def section(self, name: str) -> dict:
        """The resolved section that drives one asset, as plain data (name: a stage, 'rl', ...)."""
        if name in self.stages:
            data = self.stages[name].model_dump(mode="json")
        else:
            data = getattr(self, name).model_dump(mode="json")
        return {"recipe": self.name, "seed": self.seed, name: data}

    def section_hash(self, name: str) -> str:
        """Hash of the section minus the fields that only control how a run is carried out."""
        section = self.section(name)
        optim = section[name].get("optim") if isinstance(section[name], dict) else None
        if optim is not None:
            section[name]["optim"] = {k: v for k, v in optim.items() if k not in RUN_CONTROL_FIELDS}
        return stable_hash(section)

    def chained_hash(self, name: str) -> str:
        """Hash of a checkpoint's own section and of everything upstream that shapes it.

        A stage's weights depend on its parent's recipe and on the corpus recipe, not only on its
        own section, so editing stage 2 must change stage 3's and the RL policy's versions too.
        ``section_hash`` stays the job's own check (``--expect-hash``); this one versions the asset.
        """
        if name in ("base_model", "corpus", "evaluation"):
            return self.section_hash(name)
        return stable_hash({
            "section": self.section_hash(name),
            "parent": self.chained_hash(self.stage(name).parent),
            "corpus": self.section_hash("corpus"),
        })


def stable_hash(data: Any, length: int = 16) -> str:
    """sha256 of canonical JSON (sorted keys): the same data always gives the same hash."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def resolve_recipe_path(name_or_path: str | os.PathLike | None = None) -> Path:
    """A recipe name shipped in recipes/ (``embedded``, ``paper``) or a path to a YAML file.

    ``None`` takes ``MEDMO_RECIPE`` from the environment, else the embedded default.
    """
    value = str(name_or_path or os.environ.get("MEDMO_RECIPE") or DEFAULT_RECIPE)
    path = Path(value)
    if path.suffix in (".yaml", ".yml"):
        if problem := _not_a_file(path):
            raise RecipeError(f"recipe file {path} {problem}")
        return path.resolve()
    shipped = RECIPES_DIR / f"{value}.yaml"
    if _not_a_file(shipped):
        names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
        raise RecipeError(f"no recipe named {value!r}; shipped recipes: {names}, or pass a .yaml path")
    return shipped


def deepspeed_config(name: str) -> Path:
    """A recipe's DeepSpeed file by name under ``recipes/deepspeed/``: a recipe picks a shipped config
    and cannot point at arbitrary files (``..``, absolute paths and symlinks out are refused)."""
    directory = RECIPES_DIR / "deepspeed"
    shipped = sorted(p.name for p in directory.glob("*.json"))
    try:
        path = safe_join(directory, name)
    except UnsafePathError as error:
        raise UnsafePathError(f"{name!r} leaves recipes/deepspeed/ ({error}); shipped: {shipped}") from None
    if problem := _not_a_file(path):
        raise FileNotFoundError(f"DeepSpeed config {name!r} is not in recipes/deepspeed/: it {problem} (shipped: "
                                f"{shipped})")
    _check_deepspeed_json(path)
    return path


DEEPSPEED_MAX_BYTES = 1 << 20  # a DeepSpeed config is a few hundred bytes


def _check_deepspeed_json(path: Path) -> None:
    """A DeepSpeed file read within ``DEEPSPEED_MAX_BYTES`` as a JSON object, at load: DeepSpeed
    parses it only when the stage's processes start, and its error names no file."""
    try:
        config = json.loads(read_bounded(path, DEEPSPEED_MAX_BYTES, what=str(path)).decode("utf-8"))
    except FileTooLarge as error:
        raise ValueError(str(error)) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"{path}: not a JSON file ({type(error).__name__}: {str(error)[:200]})") from None
    if isinstance(config, dict):
        return
    raise ValueError(f"{path}: a JSON {type(config).__name__}, not the object DeepSpeed reads")  # pydantic's kind


def _not_a_file(path: Path) -> str:
    """Why ``path`` is not a regular file ('' when it is). ``Path.is_file`` raises on a name longer
    than the file system takes, which would name neither the recipe nor the field."""
    try:
        return "" if stat.S_ISREG(os.stat(path).st_mode) else "is not a regular file"
    except FileNotFoundError:
        return "does not exist"
    except OSError as error:
        return f"cannot be read ({error.strerror or type(error).__name__})"


def load_recipe_shape(name_or_path: str | os.PathLike | None = None) -> Recipe:
    """Load and validate a recipe's shape; errors name the file and the dotted field path.

    DeepSpeed configs, TRL field names and the stage chain are resolved here, so a job fails at
    start. Only what sits below the registries calls this directly: everything else loads through
    ``config.load_recipe``, which adds the registry names (sources, rewards, benchmarks).
    """
    path = resolve_recipe_path(name_or_path)
    try:
        data = read_yaml(path, max_nodes=MAX_RECIPE_NODES)
    except YamlRefused as exc:
        raise RecipeError(str(exc)) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping at the top level")
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        raise RecipeError(f"{path}: invalid recipe:\n{_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    errors = [(_without_union_tags(err["loc"]), err) for err in exc.errors()]
    lines = []
    for location, err in errors:
        if err["loc"] != location and any(other[:len(location)] == location and len(other) > len(location)
                                          for other, _ in errors):
            continue  # a union's other form ("a list") where the value took this one and failed inside it
        message = err["msg"].removeprefix("Value error, ")
        named = _NAMED_FIELD.match(message)  # a check across fields names its field first
        if named and (model := _model_at(location)) and named.group(1).split(".")[0] in model.model_fields:
            location, message = (*location, *named.group(1).split(".")), message[named.end():]
        if err["type"] == "extra_forbidden":
            message = _unknown_field(location)
        lines.append(field_problem(location, message))
    return "\n".join(dict.fromkeys(lines))


_NAMED_FIELD = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)*): ")


def _unknown_field(location: tuple) -> str:
    """What to say of a key no field takes: the field it is closest to, else the fields there are."""
    import difflib

    model = _model_at(location[:-1])
    if model is None:
        return "unknown field (check the spelling against the recipe reference)"
    known = sorted(model.model_fields)
    if close := difflib.get_close_matches(str(location[-1]), known, n=1, cutoff=0.6):
        return f"unknown field; did you mean {close[0]!r}?"
    return f"unknown field (fields here: {', '.join(known)})"


def _model_at(location: tuple) -> type[BaseModel] | None:
    """The recipe model whose fields the keys at ``location`` are (None where they are not a model's:
    inside ``tiny``, ``trainer_args``, a mapping of numbers). A stage's name is a key of ``stages``."""
    model, parts = Recipe, list(location)
    while parts:
        part = parts.pop(0)
        field = model.model_fields.get(part) if isinstance(part, str) else None
        nested = _nested_model(field.annotation) if field else None
        if nested is None:
            return None
        model, keyed = nested
        if keyed and not parts:  # the mapping itself: its keys are names, not fields
            return None
        if keyed:
            parts.pop(0)
    return model


def _nested_model(annotation: Any) -> tuple[type[BaseModel], bool] | None:
    """The model a field holds (optionally), and whether it holds a mapping of names to them."""
    kinds = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    for kind in kinds:
        keyed = get_origin(kind) is dict
        inner = get_args(kind)[-1] if keyed else kind
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner, keyed
    return None


def _without_union_tags(location: tuple) -> tuple:
    """A field's path without pydantic's names of a union's forms (``dict[str,float]``): no recipe
    key holds brackets."""
    return tuple(part for part in location if not (isinstance(part, str) and "[" in part))


def field_problem(location: tuple | list, message: str) -> str:
    """One line of a RecipeError: the dotted field path and what is wrong with it, a secret pasted
    into the recipe left out (the error is printed and logged: "hf_... are not benchmarks")."""
    line = f"  - {'.'.join(str(p) for p in location) or '(top level)'}: {message}"
    return SECRET_VALUE.sub("<secret>", line)
