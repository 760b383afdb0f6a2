"""Recipes loaded and checked whole: ``load_recipe`` is the one way in.

``load_recipe`` validates a recipe's shape (``recipe_schema``: types, ranges, the stage chain,
shipped DeepSpeed files, TRL field names), then resolves every name it takes from the layers above
it: the tiny base model's spec (as ``base_model`` will build it), synthetic and registry sources,
rewards (names and typed parameters, as the RL job binds them) and benchmarks. So ``medmo``,
Dagster's definitions, the rehearsal and the training and evaluation jobs refuse a misspelled
dataset, reward or benchmark before any work starts. Every error is a ``RecipeError`` naming the
file, then one line per bad field with its dotted path.

This module sits above the data and rewards layers that own those registries and below the stages
that run recipes (docs/architecture.md). The recipe types live in ``recipe_schema``, below them;
they are re-exported here, so ``from medmo_pipeline.config import Recipe, load_recipe`` is all a
user of the library needs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from medmo_pipeline.data.benchmarks.loading import BENCHMARKS
from medmo_pipeline.data.benchmarks.registry import load_registry as load_benchmark_registry
from medmo_pipeline.data.image_limits import use_in_process
from medmo_pipeline.data.registry import load_registry as load_source_registry
from medmo_pipeline.data.sources import image_limits
from medmo_pipeline.data.synthetic import SYNTHETIC_SOURCES
from medmo_pipeline.jobs import checked_recipe as checked_recipe_with
from medmo_pipeline.model.tiny import resolve_spec
from medmo_pipeline.recipe_schema import (
    DEFAULT_RECIPE,
    MAX_RECIPE_NODES,
    MAX_WEIGHT,
    RECIPES_DIR,
    RUN_CONTROL_FIELDS,
    BaseModelRecipe,
    CorpusRecipe,
    EvaluationRecipe,
    GRPORecipe,
    GuardRecipe,
    ImageLimitsRecipe,
    ImageRecipe,
    MixtureRecipe,
    OptimRecipe,
    Recipe,
    RecipeError,
    RegistryCorpusRecipe,
    RLStageRecipe,
    SFTStageRecipe,
    SyntheticCorpusRecipe,
    TrackingRecipe,
    deepspeed_config,
    field_problem,
    load_recipe_shape,
    resolve_recipe_path,
    stable_hash,
    trained_registry_names,
)
from medmo_pipeline.rewards.registry import build_reward_functions, reward_tasks
from medmo_pipeline.tracking import SECRET_VALUE, flatten, looks_secret

__all__ = [
    "DEFAULT_RECIPE", "MAX_RECIPE_NODES", "RECIPES_DIR", "RUN_CONTROL_FIELDS",
    "BaseModelRecipe", "CorpusRecipe", "EvaluationRecipe", "GRPORecipe", "GuardRecipe", "ImageLimitsRecipe",
    "ImageRecipe", "MixtureRecipe", "OptimRecipe", "RLStageRecipe", "Recipe", "RecipeError",
    "RegistryCorpusRecipe", "SFTStageRecipe", "SyntheticCorpusRecipe", "TrackingRecipe",
    "check_recipe", "checked_recipe", "deepspeed_config", "field_problem", "load_recipe",
    "load_recipe_shape", "resolve_recipe_path", "stable_hash", "trained_registry_names",
]


def load_recipe(name_or_path: str | os.PathLike | None = None) -> Recipe:
    """The recipe validated whole: its shape, then every registry name it uses (``check_recipe``).

    ``name_or_path``: a shipped recipe's name (``embedded``, ``paper``), a YAML path, or None for
    ``MEDMO_RECIPE`` from the environment, else the embedded default.
    """
    recipe = load_recipe_shape(name_or_path)
    check_recipe(recipe, resolve_recipe_path(name_or_path))
    return recipe


def check_recipe(recipe: Recipe, path: Path | str = "recipe") -> None:
    """Raise ``RecipeError`` naming ``path`` and each field whose registry name does not resolve."""
    problems = [*_base_model_problems(recipe), *_synthetic_problems(recipe), *_source_problems(recipe),
                *_reward_problems(recipe), *_benchmark_problems(recipe), *_secret_problems(recipe)]
    if problems:
        raise RecipeError(f"{path}: invalid recipe:\n" + "\n".join(problems))


def checked_recipe(args, section: str) -> tuple[Recipe, str]:
    """``jobs.checked_recipe`` with the whole check: what the training and evaluation jobs load. The
    recipe's ``corpus.image_limits`` become the job process's (``image_limits.use_in_process``): its
    model decoder and image checks hold images to the budget curation kept them under."""
    recipe, code_version = checked_recipe_with(args, section, load=load_recipe)
    use_in_process(image_limits(recipe.corpus))
    return recipe, code_version


def _base_model_problems(recipe: Recipe) -> list[str]:
    if recipe.base_model.source == "hub":
        return _hub_model_problems(recipe.base_model.name_or_path)
    try:  # keys, types, the architecture's constraints and its size, as base_model will build it
        resolve_spec(recipe.base_model.tiny)
    except ValueError as error:
        return [field_problem(("base_model", "tiny"), str(error))]
    return []


def _hub_model_problems(name: str) -> list[str]:
    """A hub model is a local directory or a hub id (``namespace/name``); anything else (a folder that
    is not there, a path mistyped) failed only when the first stage started, as a hub lookup."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if os.path.isdir(os.path.expanduser(name)):  # False for a name the file system cannot take
        return []
    try:
        validate_repo_id(name)
    except HFValidationError:
        return [field_problem(("base_model", "name_or_path"), f"{name[:200]!r} is neither a local directory nor a "
                                                              "hub id (namespace/name, e.g. Qwen/Qwen3-VL-8B-Instruct)")]
    return []


def _synthetic_problems(recipe: Recipe) -> list[str]:
    spec = recipe.corpus.synthetic
    if spec is None:
        return []
    return [field_problem(("corpus", "synthetic", field), f"{unknown} are not synthetic sources "
                                                          f"(known: {list(SYNTHETIC_SOURCES)})")
            for field, counts in (("train_rows", spec.train_rows), ("eval_rows", spec.eval_rows))
            if (unknown := sorted(set(counts) - set(SYNTHETIC_SOURCES)))]


def _source_problems(recipe: Recipe) -> list[str]:
    registry = recipe.corpus.registry
    if registry is None:
        return []
    try:
        known = {entry.name for entry in load_source_registry(registry.registry_path()).datasets}
    except ValueError as error:
        return [field_problem(("corpus", "registry", "registry"), str(error))]
    problems = []
    if unknown := sorted(set(registry.sources or ()) - known):
        problems.append(field_problem(("corpus", "registry", "sources"),
                                      f"{unknown} are not in the registry (known: {sorted(known)})"))
    if unknown := sorted(set(registry.versions) - set(registry.sources or known)):
        problems.append(field_problem(("corpus", "registry", "versions"),
                                      f"{unknown} are not sources this corpus reads"))
    # every form os.path.expandvars expands: ${NAME} and $NAME
    names = [braced or bare for braced, bare in re.findall(r"\$(?:\{(\w+)\}|(\w+))", registry.data_root)]
    if secret := [name for name in names if looks_secret(name)]:
        problems.append(field_problem(("corpus", "registry", "data_root"), f"expands {secret[0]}, a secret, into a "
                                                                           "path that is logged and shown"))
    if odd := re.search(r"\$\{(?!\w+\})[^}]*\}?", registry.data_root):  # ${NAME:-default}: left as written
        problems.append(field_problem(("corpus", "registry", "data_root"), f"{odd.group()!r} is not expanded: "
                                                                           "write ${NAME} or $NAME"))
    return problems


def _reward_problems(recipe: Recipe) -> list[str]:
    problems, weights = [], {}
    for name, params in recipe.rl.rewards.items():
        try:  # its name and parameters, bound as the RL job will bind them
            weights[name] = build_reward_functions({name: params})[1][0]
        except (ValueError, TypeError) as error:
            problems.append(field_problem(("rl", "rewards", name), str(error)))
        else:
            if weights[name] > MAX_WEIGHT:  # the weighted sum of several overflows to infinity
                problems.append(field_problem(("rl", "rewards", name, "weight"), f"{weights[name]:g}: weights are "
                                                                                   f"relative, at most {MAX_WEIGHT:g}"))
    if problems:
        return problems
    if not any(weights.values()):
        problems.append(field_problem(("rl", "rewards"), "every reward weighs 0: the policy would have nothing "
                                                         "to learn from (a reward to log only may weigh 0)"))
    scored = {task for name, weight in weights.items() if weight
              for task in reward_tasks(name, recipe.rl.rewards[name]) or ()}
    if unscored := [task for task in recipe.rl.mixture.tasks if task not in scored]:
        problems.append(field_problem(("rl", "mixture", "tasks"), f"{unscored}: no weighted reward scores the answer "
                                      f"of these tasks (rewards: {sorted(weights)}); their rows teach the format only"))
    overlong = recipe.rl.rewards.get("soft_overlong") or {}
    if "max_completion_len" in overlong and overlong["max_completion_len"] != recipe.rl.grpo.max_completion_length:
        problems.append(field_problem(("rl", "rewards", "soft_overlong", "max_completion_len"), (
            f"{overlong['max_completion_len']} is not rl.grpo.max_completion_length "
            f"({recipe.rl.grpo.max_completion_length}): the punishment would start elsewhere than the length cut")))
    return problems


def _secret_problems(recipe: Recipe) -> list[str]:
    """Fields that hold a secret: a recipe is logged (MLflow params, lineage.json), so secrets come
    from the environment. A field's name or its value gives it away (``tracking.looks_secret``)."""
    problems = []
    for path, value in flatten(recipe.model_dump(mode="json"), cut=False).items():  # a secret past MAX_PARAM too
        named = ".trainer_args." in path and looks_secret(path.rsplit(".", 1)[-1])  # hub_token: a trainer's secret
        if (named and value not in ("", "None")) or SECRET_VALUE.search(value):
            problems.append(field_problem(tuple(path.split(".")), "looks like a secret: a recipe is logged, so put "
                                                                  "it in the environment (HF_TOKEN, ...) instead"))
    return problems


def _benchmark_problems(recipe: Recipe) -> list[str]:
    known = set(BENCHMARKS) | set(load_benchmark_registry().names())
    unknown = sorted(set(recipe.evaluation.benchmarks) - known)
    if unknown:
        return [field_problem(("evaluation", "benchmarks"), f"{unknown} are not benchmarks (known: {sorted(known)})")]
    return []
