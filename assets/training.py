"""The training side of the graph: ``base_model`` -> one asset per SFT stage -> ``rl_policy``.

Each stage asset reads its parent checkpoint, the parent's evaluation (whose regression guard can stop
it) and its own mixture, queues for a slot of the training pool, and runs the stage's job through the
``launcher`` resource. Its output directory is named by the recipe section, the parent and the data,
so the same inputs land in the same place (a re-run replaces it).
"""

import dagster as dg

from assets.automation import refuse_after_failed_guard
from assets.keys import BASE, checkpoint_key, eval_key, mixture_key
from assets.upstream import latest_output
from medmo_pipeline import home
from medmo_pipeline.config import Recipe
from resources.launcher import Launcher
from resources.pools import TRAINING_POOL

SFT_JOB = "medmo_pipeline.training.sft"
RL_JOB = "medmo_pipeline.training.grpo"


def training_assets(recipe: Recipe, recipe_arg: list[str]) -> list[dg.AssetsDefinition]:
    """The base model, every SFT stage of the recipe, and RL."""
    stages = [stage_asset(name, stage.parent, stage.purpose, SFT_JOB, recipe, recipe_arg)
              for name, stage in recipe.stages.items()]
    rl = stage_asset("rl", recipe.rl.parent, recipe.rl.purpose, RL_JOB, recipe, recipe_arg)
    return [base_model_asset(recipe, recipe_arg), *stages, rl]


def base_model_asset(recipe: Recipe, recipe_arg: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        key=BASE, group_name="training", code_version=recipe.chained_hash("base_model"),
        description="The base model every stage starts from (tiny offline Qwen3-VL, or a hub model).",
        kinds={"pytorch"},
    )
    def base_model(context: dg.AssetExecutionContext, launcher: Launcher) -> dg.MaterializeResult:
        version = recipe.section_hash("base_model")
        output = home.models_dir() / "base" / version
        return launcher.launch(context, "medmo_pipeline.training.base_model",
                               [*recipe_arg, "--output", str(output), "--expect-hash", version])

    return base_model


def stage_asset(name: str, parent: str, purpose: str, module: str, recipe: Recipe, recipe_arg: list[str]
                ) -> dg.AssetsDefinition:
    """One training stage (SFT or RL): parent checkpoint + the stage's mixture in, checkpoint out."""
    key, parent_key = checkpoint_key(name), checkpoint_key(parent)
    version = recipe.section_hash(name)

    # The parent's evaluation comes first: its regression guard (a blocking check) can stop this stage in
    # the same run, and refuse_after_failed_guard stops it in a later one.
    @dg.asset(
        key=key, deps=[parent_key, eval_key(parent), mixture_key(name)], group_name="training",
        code_version=recipe.chained_hash(name), pool=TRAINING_POOL,
        description=f"{name}: {purpose} (parent: {parent_key.to_user_string()}).", kinds={"pytorch", "mlflow"},
    )
    def _stage(context: dg.AssetExecutionContext, launcher: Launcher) -> dg.MaterializeResult:
        refuse_after_failed_guard(context.instance, recipe, parent, key)
        parent_path, parent_version = latest_output(context.instance, parent_key)
        mixture_index, mixture_version = latest_output(context.instance, mixture_key(name))
        output = home.checkpoints_dir() / name / f"{version[:12]}-{parent_version[:12]}-{mixture_version[:12]}"
        return launcher.launch(context, module, [
            *recipe_arg, "--stage", name, "--parent", parent_path, "--corpus", mixture_index,
            "--output", str(output), "--expect-hash", version,
        ])

    return _stage
