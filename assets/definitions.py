"""The asset graph, built from one recipe: corpus -> base model -> SFT stages -> RL -> evaluation.

This module only assembles the parts; each lives in its own module:

- ``assets.keys``: every asset key and check name;
- ``assets.upstream``: the newest materialization of an upstream asset (its path and data version);
- ``assets.corpus``: sources, curated shards (one partition per source), the stages' mixtures;
- ``assets.training``: the base model, the SFT stages and RL;
- ``assets.evaluation``: the evaluation tables (one partition per benchmark) and the stage ablation;
- ``assets.automation``: the training pool, the regression guards, the schedule and the sensor;
- ``resources.profiles``: the ``launcher`` resource the active profile selects.

Assets are thin (docs/architecture.md, rule 2): resolve the recipe section, build the job's arguments, run it through the
``launcher`` resource, return what the job reported over Pipes. Each asset's code version hashes its
own recipe section together with its upstream ones (``Recipe.chained_hash``), so a recipe edit shows
that asset and everything downstream of it as stale; the job itself checks only its own section
(``--expect-hash``).
"""

from pathlib import Path

import dagster as dg

from assets.automation import guard_checks, nightly_policy_evaluation, source_sensor
from assets.corpus import curation_assets
from assets.evaluation import evaluation_assets
from assets.training import training_assets
from medmo_pipeline.config import Recipe, load_recipe, resolve_recipe_path
from resources.profiles import launcher_from_profile


def build_definitions(recipe: Recipe, recipe_path: Path) -> dg.Definitions:
    recipe_arg = ["--recipe", str(recipe_path)]
    return dg.Definitions(
        assets=[*curation_assets(recipe, recipe_arg), *training_assets(recipe, recipe_arg),
                *evaluation_assets(recipe, recipe_arg)],
        asset_checks=guard_checks(recipe),
        sensors=[source_sensor(recipe)],
        schedules=[nightly_policy_evaluation(recipe)],
        resources={"launcher": launcher_from_profile(offline=recipe.offline)},
        executor=dg.in_process_executor,  # the heavy work runs in launched jobs, not in step processes
    )


def default_definitions() -> dg.Definitions:
    """Definitions for the recipe named by MEDMO_RECIPE (default: the embedded default)."""
    path = resolve_recipe_path()
    return build_definitions(load_recipe(path), path)
