"""A recipe checked against everything it names: the source, reward and benchmark registries.

``config.load_recipe`` checks a recipe's shape from below the layers that own those registries
(docs/architecture.md); this module sits above them and adds the names, so ``medmo``, Dagster's
definitions and the rehearsal refuse a misspelled dataset, reward or benchmark before any job
starts. Errors are ``RecipeError`` in the same form as shape errors: the file, then one line per
bad field with its dotted path.
"""

from __future__ import annotations

import os
from pathlib import Path

from medmo_pipeline.config import Recipe, RecipeError, field_problem, resolve_recipe_path
from medmo_pipeline.config import load_recipe as load_recipe_shape
from medmo_pipeline.data.benchmarks.loading import BENCHMARKS
from medmo_pipeline.data.benchmarks.registry import load_registry as load_benchmark_registry
from medmo_pipeline.data.registry import load_registry as load_source_registry
from medmo_pipeline.rewards.registry import build_reward_functions


def load_recipe(name_or_path: str | os.PathLike | None = None) -> Recipe:
    """``config.load_recipe``, then every registry name the recipe uses resolved (``check_recipe``)."""
    recipe = load_recipe_shape(name_or_path)
    check_recipe(recipe, resolve_recipe_path(name_or_path))
    return recipe


def check_recipe(recipe: Recipe, path: Path | str = "recipe") -> None:
    """Raise ``RecipeError`` naming ``path`` and each field whose registry name does not resolve."""
    problems = [*_source_problems(recipe), *_reward_problems(recipe), *_benchmark_problems(recipe)]
    if problems:
        raise RecipeError(f"{path}: invalid recipe:\n" + "\n".join(problems))


def _source_problems(recipe: Recipe) -> list[str]:
    registry = recipe.corpus.registry
    if registry is None:
        return []
    try:
        known = {entry.name for entry in load_source_registry(registry.registry_path()).datasets}
    except ValueError as error:
        return [field_problem(("corpus", "registry", "registry"), str(error))]
    unknown = sorted(set(registry.sources or ()) - known)
    if unknown:
        return [field_problem(("corpus", "registry", "sources"),
                              f"{unknown} are not in the registry (known: {sorted(known)})")]
    return []


def _reward_problems(recipe: Recipe) -> list[str]:
    try:
        build_reward_functions(recipe.rl.rewards)  # names and parameters, as the RL job will bind them
    except ValueError as error:
        return [field_problem(("rl", "rewards"), str(error))]
    return []


def _benchmark_problems(recipe: Recipe) -> list[str]:
    known = set(BENCHMARKS) | set(load_benchmark_registry().names())
    unknown = sorted(set(recipe.evaluation.benchmarks) - known)
    if unknown:
        return [field_problem(("evaluation", "benchmarks"), f"{unknown} are not benchmarks (known: {sorted(known)})")]
    return []
