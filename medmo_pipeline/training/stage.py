"""The skeleton every training job runs; the SFT and GRPO jobs fill in only where they differ.

    command line -> recipe section (checked against --expect-hash) -> corpus index + stage plan
    -> resume plan -> the job's stream, trainer configuration, policy and processor (``prepare``)
    -> one MLflow run (main process only) -> train -> the job's metrics -> lineage
    -> checkpoint published (``model.checkpoint``) -> registered when chosen -> MLflow artifacts
    -> resume work directory removed -> asset metadata reported

Keeping this in one place is what keeps the two stages' checkpoints, lineage, MLflow runs and
Dagster metadata the same contract: a job can only differ in the hooks ``StageJob`` names. Every
rank trains; the main process alone publishes, logs and reports.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medmo_pipeline.config import checked_recipe

# Files of every published checkpoint that are logged to the stage's MLflow run.
CHECKPOINT_ARTIFACTS = ("lineage.json", "recipe.yaml", "training_curves.png")


@dataclass
class StageRun:
    """One job's state as the skeleton hands it to the job's hooks.

    The skeleton fills the inputs; ``StageJob.prepare`` fills ``data``, ``config``, ``model`` and
    ``processor``.
    """

    args: Any
    recipe: Any
    code_version: str
    name: str  # the stage as lineage, MLflow and the model registry name it
    stage: Any  # the recipe's section for it (a ``StageRecipe`` or the ``RLRecipe``)
    reporter: Any
    index: dict
    plan: dict
    start: Any = None  # the ``resume.ResumePlan``
    history: list[dict] = field(default_factory=list)
    data: Any = None  # the ``streamed.StageData``
    config: Any = None
    model: Any = None
    processor: Any = None

    def stream(self, features, to_example, *, examples_per_step: int, per_rank: bool = True):
        """The stage's data stream, starting where a resumed checkpoint left it."""
        from medmo_pipeline.training.streamed import StageData

        return StageData(self.plan, self.recipe.seed, features, to_example, examples_per_step=examples_per_step,
                         per_rank=per_rank, resume_from=self.start.checkpoint, resume_step=self.start.step or 0,
                         index=self.index)

    def load_processor(self):
        """The parent's processor at the stage's image resolution."""
        from medmo_pipeline.model.loading import load_processor, set_image_resolution

        processor = load_processor(self.args.parent, trust_remote_code=self.recipe.base_model.trust_remote_code)
        set_image_resolution(processor, self.stage.image.max_pixels, self.stage.image.min_pixels)
        return processor


class StageJob:
    """What one training stage fills into ``run``'s skeleton. Per job instance: one run's state."""

    description: str = ""  # the command line's help
    default_stage: str | None = None  # --stage when the command line names none (else it is required)
    artifacts: tuple[str, ...] = ()  # further files the job writes into its checkpoint, logged to MLflow

    def stage_name(self, args) -> str:
        """The stage's name in lineage, MLflow and the registry (``--stage`` unless the job fixes it)."""
        return args.stage

    def recipe_stage(self, recipe, stage: str):
        """The recipe section this job trains with."""
        raise NotImplementedError

    def plan_message(self, run: StageRun) -> str:
        """The log line saying what the stage's plan will stream."""
        raise NotImplementedError

    def prepare(self, run: StageRun) -> None:
        """Set ``run.data``, ``run.config``, ``run.model`` and ``run.processor`` (the trainer configuration
        before the policy loads: see ``trainer_setup.load_for_training``)."""
        raise NotImplementedError

    def callbacks(self, run: StageRun) -> list:
        """Further trainer callbacks, after the reporting one."""
        return []

    def trainer(self, run: StageRun, callbacks: list):
        """The TRL trainer over ``run``'s prepared parts, with ``callbacks``."""
        raise NotImplementedError

    def metrics(self, run: StageRun, result) -> dict:
        """The stage's metrics for lineage and metadata, from the trainer's ``TrainOutput``."""
        raise NotImplementedError

    def rows_skipped_undecodable(self) -> int:
        """How many rows this process left out because their images do not decode."""
        return 0

    def rows_skipped_malformed(self) -> int:
        """How many rows this process left out as malformed (``examples.row_problem``)."""
        return 0

    def write_files(self, run: StageRun, directory: Path) -> None:
        """Write further files (plots) into the checkpoint being published."""

    def add_metadata(self, run: StageRun, meta: dict) -> None:
        """Add to the asset metadata (``checkpoint_metadata``) before it is reported."""


def run(job: StageJob, argv: list[str] | None = None) -> None:
    """Run one training stage: see the module docstring for the steps."""
    args = training_argument_parser(job.description, default_stage=job.default_stage).parse_args(argv)
    recipe, code_version = checked_recipe(args, args.stage)
    stage = job.recipe_stage(recipe, args.stage)
    name = job.stage_name(args)

    from medmo_pipeline.jobs import job_reporter

    with job_reporter() as reporter:
        started = time.time()
        import mlflow

        from medmo_pipeline import tracking
        from medmo_pipeline.data import corpus, mixture
        from medmo_pipeline.model.checkpoint import parent_reference, publish_checkpoint
        from medmo_pipeline.training import resume, streamed
        from medmo_pipeline.training.trainer_setup import gathered_state_dict

        index = corpus.load_index(args.corpus)
        plan = streamed.stage_plan(index, stage.mixture)
        state = StageRun(args=args, recipe=recipe, code_version=code_version, name=name, stage=stage,
                         reporter=reporter, index=index, plan=plan)
        reporter.log(job.plan_message(state))
        state.start = start = resume_plan(args, stage.optim, code_version, index["data_version"])
        reporter.log(start.describe())
        job.prepare(state)
        state.history = history = start.history()
        section = recipe.section(name)
        with main_process_mlflow_run(
            recipe.tracking.experiment, f"{name}-{code_version[:8]}", params=section,
            tags={"stage": name, "code_version": code_version, "corpus_data_version": index["data_version"],
                  "parent": args.parent},
        ) as mlflow_run:
            callbacks = [reporting_callback(reporter, mlflow, history), *job.callbacks(state),
                         state.data.callback(), resume.completion_callback(start.key)]
            trainer = job.trainer(state, callbacks)
            result = trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
            state_dict = gathered_state_dict(trainer)
            skipped = {"rows_skipped_undecodable": job.rows_skipped_undecodable(),
                       "rows_skipped_malformed": job.rows_skipped_malformed()}
            if state.data.per_rank:  # each rank decoded its own part of the rows: a collective
                skipped = {name: resume.summed_over_ranks(n) for name, n in skipped.items()}
            if not resume.is_main_process():
                return  # rank 0 publishes, logs and reports
            # The counts reach the log and MLflow too, not only lineage and the asset metadata.
            reporter.log(f"{name}: {skipped['rows_skipped_undecodable']} rows skipped as undecodable, "
                         f"{skipped['rows_skipped_malformed']} as malformed")
            mlflow.log_metrics({key: float(n) for key, n in skipped.items()})
            metrics = job.metrics(state, result) | skipped
            drawn = state.data.streamed(int(result.global_step))
            lineage = tracking.lineage_record(
                stage=name, parent=parent_reference(args.parent), corpus=corpus.lineage_view(index),
                mixture={"recipe": stage.mixture.model_dump(mode="json"), "rows": mixture.describe(plan),
                         "streamed": drawn, "drawn": streamed.drawn_by_task(plan, drawn)},
                recipe_name=recipe.name, recipe_section=section, recipe_hash=code_version,
                mlflow_run_id=mlflow_run.info.run_id, started=started, metrics=metrics,
            ) | {"resume": start.lineage()}
            data_version, lineage = publish_checkpoint(
                trainer.model, state.processor, args.output, lineage=lineage, recipe_section=section,
                history=history, title=f"{name} ({recipe.name})",
                extra=lambda directory: job.write_files(state, directory), state_dict=state_dict,
            )
            mlflow.set_tag("data_version", data_version)
            registered = tracking.register_if_chosen(recipe.tracking.register_models, name, args.output, lineage)
            for artifact in (*CHECKPOINT_ARTIFACTS, *job.artifacts):
                if (args.output / artifact).exists():
                    mlflow.log_artifact(str(args.output / artifact))
        resume.finish(start)
        meta = checkpoint_metadata(args.output, {**lineage, "registered_model": registered}, metrics,
                                   elapsed(started))
        job.add_metadata(state, meta)
        reporter.report(meta, data_version=data_version)


def skip_limit(plan: dict) -> int:
    """Rows in a row a stage's stream may leave out before the job ends (``examples.skip_bad_rows``):
    two passes of the plan (one good row per pass may sit first in one pass and last in the next), at
    most ``examples.MAX_SKIPPED_IN_A_ROW``."""
    from medmo_pipeline.training.examples import MAX_SKIPPED_IN_A_ROW

    return max(1, min(MAX_SKIPPED_IN_A_ROW, 2 * int(plan["planned_samples"])))


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


def resume_plan(args, optim, recipe_hash: str, corpus_data_version: str):
    """Where this stage saves and what it resumes from (see ``training.resume``)."""
    from medmo_pipeline.model.checkpoint import parent_version
    from medmo_pipeline.training import resume

    key = resume.ResumeKey(stage=args.stage, recipe_hash=recipe_hash, parent_data_version=parent_version(args.parent),
                           corpus_data_version=corpus_data_version, world_size=resume.world_size())
    return resume.plan(args.output, key, optim.on_mismatch, main_process=resume.is_main_process())


@contextmanager
def main_process_mlflow_run(experiment: str, run_name: str, *, params: dict, tags: dict[str, str]):
    """One MLflow run per job: opened by the main process only (None on the other ranks)."""
    from medmo_pipeline import tracking
    from medmo_pipeline.training.resume import is_main_process

    if not is_main_process():
        yield None
        return
    with tracking.mlflow_run(experiment, run_name, params=params, tags=tags) as mlflow_run:
        yield mlflow_run


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


def elapsed(started: float) -> float:
    return round(time.time() - started, 2)


def checkpoint_metadata(path, lineage: dict, metrics: dict, wall_seconds: float) -> dict:
    """Asset metadata repeating lineage.json's key fields (shown in the Dagster UI)."""
    import json

    from medmo_pipeline.jobs import Md
    from medmo_pipeline.plots import markdown_image

    parent = lineage.get("parent") or {}
    corpus = lineage.get("corpus") or {}
    meta = {
        "path": Path(path).resolve(),
        "stage": lineage["stage"],
        "parent_checkpoint": str(parent.get("path", "")),
        "parent_data_version": str(parent.get("data_version") or ""),
        "corpus_data_version": str(corpus.get("data_version", "")),
        "recipe_hash": lineage["recipe"]["hash"],
        "mlflow_run_id": lineage["mlflow_run_id"],
        "git_commit": lineage["git_commit"],
        "wall_seconds": float(wall_seconds),
        "resumed_from": str(((lineage.get("resume") or {}).get("resumed_from") or {}).get("path", "")),
        "resume_key": str((lineage.get("resume") or {}).get("key", "")),
        "lineage": Md("```json\n" + json.dumps(lineage, indent=2, default=str) + "\n```"),
    }
    if lineage.get("registered_model"):
        registered = lineage["registered_model"]
        meta["registered_model"] = f"{registered['name']} version {registered['version']}"
    meta.update({k: v for k, v in metrics.items() if v is not None})
    curve = Path(path) / "training_curves.png"
    if curve.exists():
        meta["training_curves"] = curve.resolve()
        meta["training_curves_plot"] = Md(markdown_image(curve, "training curves"))
    return meta
