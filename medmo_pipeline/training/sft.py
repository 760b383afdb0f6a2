"""Supervised fine-tuning job: one entry point for all SFT stages, one recipe section each.

    python -m medmo_pipeline.training.sft --recipe embedded --stage stage1 \
        --parent .medmo/models/base/<version> --corpus .medmo/corpus/index/<version>.json \
        --output .medmo/checkpoints/stage1/<key>

Runs standalone; launched by Dagster it reports through Pipes instead of the console.
"""

from __future__ import annotations

import functools
import time

from medmo_pipeline.jobs import checked_recipe, entry_point
from medmo_pipeline.training import common


@entry_point
def main(argv: list[str] | None = None) -> None:
    args = common.training_argument_parser(__doc__.splitlines()[0]).parse_args(argv)
    recipe, code_version = checked_recipe(args, args.stage)
    stage = recipe.stages[args.stage]

    from medmo_pipeline.jobs import job_reporter

    with job_reporter() as reporter:
        started = time.time()
        import mlflow
        from trl import SFTConfig, SFTTrainer

        from medmo_pipeline import tracking
        from medmo_pipeline.data import corpus, mixture
        from medmo_pipeline.model.loading import load_processor, set_image_resolution
        from medmo_pipeline.model.patch_projection import use_patchwise_projection
        from medmo_pipeline.training import resume, streamed
        from medmo_pipeline.training.collation import answer_masked_collator, mirror_pad_token

        index = corpus.load_index(args.corpus)
        plan = streamed.stage_plan(index, stage.mixture)
        reporter.log(f"{args.stage}: {plan['planned_samples']} samples planned per pass over "
                     f"{sorted(plan['sources'])}; loading {args.parent}")
        start = common.resume_plan(args, stage.optim, code_version, index["data_version"])
        reporter.log(start.describe())
        optim = stage.optim
        example = common.skip_undecodable(functools.partial(common.sft_example, reply_format=stage.reply_format),
                                          reporter.log)
        data = streamed.StageData(plan, recipe.seed, common.sft_features(), example,
                                  examples_per_step=optim.per_device_train_batch_size * optim.gradient_accumulation_steps,
                                  resume_from=start.checkpoint, resume_step=start.step or 0)
        global_examples = data.examples_per_step * streamed.world_size()
        # Built before the model loads, so that a ZeRO-3 config partitions the weights as they load.
        config = SFTConfig(
            **common.trainer_arguments(optim, output_dir=start.work_dir, seed=recipe.seed)
            | data.trainer_arguments(optim, global_examples_per_step=global_examples),
            max_length=stage.max_length,
            assistant_only_loss=True,  # loss on the answers only, via the template's generation marks
        )
        base = recipe.base_model
        model = common.load_for_training(args.parent, base, stage.optim, config)
        use_patchwise_projection(model)  # same values, a cheaper backward
        processor = load_processor(args.parent, trust_remote_code=base.trust_remote_code)
        set_image_resolution(processor, stage.image.max_pixels, stage.image.min_pixels)
        mirror_pad_token(model, processor)
        history: list[dict] = start.history()
        section = recipe.section(args.stage)
        with common.main_process_mlflow_run(
            recipe.tracking.experiment,
            f"{args.stage}-{code_version[:8]}",
            params=section,
            tags={"stage": args.stage, "code_version": code_version,
                  "corpus_data_version": index["data_version"], "parent": args.parent},
        ) as run:
            trainer = SFTTrainer(
                model=model,
                args=config,
                train_dataset=data.dataset,
                data_collator=answer_masked_collator(processor, max_length=stage.max_length),
                processing_class=processor,
                callbacks=[common.reporting_callback(reporter, mlflow, history), data.callback(),
                           resume.completion_callback(start.key)],
            )
            result = trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
            state_dict = common.gathered_state_dict(trainer)
            if not resume.is_main_process():
                return  # rank 0 publishes, logs and reports
            losses = [h["loss"] for h in history if "loss" in h]
            metrics = {
                "steps": int(result.global_step),
                "resumed_from_step": start.step,
                "final_loss": round(losses[-1], 5) if losses else None,
                "first_loss": round(losses[0], 5) if losses else None,
                "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
                "planned_samples": plan["planned_samples"],
                "samples_streamed": int(result.global_step) * global_examples,
                "rows_skipped_undecodable": len(example.skipped),
            }
            drawn = data.streamed(int(result.global_step))
            lineage = tracking.lineage_record(
                stage=args.stage,
                parent=common.parent_reference(args.parent),
                corpus=corpus.lineage_view(index),
                mixture={"recipe": stage.mixture.model_dump(mode="json"), "rows": mixture.describe(plan),
                         "streamed": drawn, "drawn": streamed.drawn_by_task(plan, drawn)},
                recipe_name=recipe.name,
                recipe_section=section,
                recipe_hash=code_version,
                mlflow_run_id=run.info.run_id,
                started=started,
                metrics=metrics,
            ) | {"resume": start.lineage()}
            data_version, lineage = common.publish_checkpoint(
                trainer.model, processor, args.output, lineage=lineage, recipe_section=section,
                history=history, title=f"{args.stage} ({recipe.name})", state_dict=state_dict,
            )
            mlflow.set_tag("data_version", data_version)
            registered = tracking.register_if_chosen(recipe.tracking.register_models, args.stage, args.output, lineage)
            for name in ("lineage.json", "recipe.yaml", "training_curves.png"):
                if (args.output / name).exists():
                    mlflow.log_artifact(str(args.output / name))
        resume.finish(start)
        reporter.report(checkpoint_metadata(args.output, {**lineage, "registered_model": registered}, metrics,
                                            common.elapsed(started)),
                        data_version=data_version)


def checkpoint_metadata(path, lineage: dict, metrics: dict, wall_seconds: float) -> dict:
    """Asset metadata repeating lineage.json's key fields (shown in the Dagster UI)."""
    from pathlib import Path

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
        "lineage": Md("```json\n" + __import__("json").dumps(lineage, indent=2, default=str) + "\n```"),
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


if __name__ == "__main__":
    main()
