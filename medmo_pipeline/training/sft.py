"""Supervised fine-tuning job: one entry point for all SFT stages, one recipe section each.

    python -m medmo_pipeline.training.sft --recipe embedded --stage stage1 \
        --parent .medmo/models/base/<version> --corpus .medmo/corpus/index/<version>.json \
        --output .medmo/checkpoints/stage1/<key>

Runs standalone; launched by Dagster it reports through Pipes instead of the console. The job's
skeleton (resume, MLflow, lineage, publishing, metadata) is ``training.stage``; what is SFT's own is
here: chat-turn examples in the stage's reply format, the loss on the answers only.
"""

from __future__ import annotations

import functools

from medmo_pipeline.jobs import entry_point
from medmo_pipeline.training import stage, trainer_setup
from medmo_pipeline.training.stage import StageRun


class SupervisedStage(stage.StageJob):
    description = __doc__.splitlines()[0]

    def recipe_stage(self, recipe, name: str):
        return recipe.stages[name]

    def plan_message(self, run: StageRun) -> str:
        return (f"{run.name}: {run.plan['planned_samples']} samples planned per pass over "
                f"{sorted(run.plan['sources'])}; loading {run.args.parent}")

    def prepare(self, run: StageRun) -> None:
        from trl import SFTConfig

        from medmo_pipeline.data.model_images import skip_undecodable
        from medmo_pipeline.model.patch_projection import use_patchwise_projection
        from medmo_pipeline.training import streamed
        from medmo_pipeline.training.collation import mirror_pad_token
        from medmo_pipeline.training.examples import sft_example, skip_bad_rows

        stage_recipe, optim = run.stage, run.stage.optim
        self.example = skip_undecodable(functools.partial(sft_example, reply_format=stage_recipe.reply_format),
                                        run.reporter.log, pixels=True)
        # Outermost: a malformed row never reaches the decoder, and a stream of only bad rows ends the job.
        self.rows = skip_bad_rows(self.example, run.reporter.log, needs_reply=True,
                                  give_up_after=stage.skip_limit(run.plan))
        run.data = run.stream(None, self.rows,  # no features: the examples hold decoded images
                              examples_per_step=optim.per_device_train_batch_size * optim.gradient_accumulation_steps)
        self.global_examples = run.data.examples_per_step * streamed.world_size()
        # Built before the model loads, so that a ZeRO-3 config partitions the weights as they load.
        run.config = SFTConfig(
            **trainer_setup.trainer_arguments(optim, output_dir=run.start.work_dir, seed=run.recipe.seed)
            | run.data.trainer_arguments(optim, global_examples_per_step=self.global_examples),
            max_length=stage_recipe.max_length,
            assistant_only_loss=True,  # loss on the answers only, via the template's generation marks
        )
        run.model = trainer_setup.load_for_training(run.args.parent, run.recipe.base_model, optim, run.config)
        use_patchwise_projection(run.model)  # same values, a cheaper backward
        run.processor = run.load_processor()
        mirror_pad_token(run.model, run.processor)

    def trainer(self, run: StageRun, callbacks: list):
        from trl import SFTTrainer

        from medmo_pipeline.training.collation import answer_masked_collator

        return SFTTrainer(
            model=run.model,
            args=run.config,
            train_dataset=run.data.dataset,
            data_collator=answer_masked_collator(run.processor, max_length=run.stage.max_length),
            processing_class=run.processor,
            callbacks=callbacks,
        )

    def metrics(self, run: StageRun, result) -> dict:
        losses = [h["loss"] for h in run.history if "loss" in h]
        return {
            "steps": int(result.global_step),
            "resumed_from_step": run.start.step,
            "final_loss": round(losses[-1], 5) if losses else None,
            "first_loss": round(losses[0], 5) if losses else None,
            "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
            "planned_samples": run.plan["planned_samples"],
            "samples_streamed": int(result.global_step) * self.global_examples,
        }

    def rows_skipped_undecodable(self) -> int:
        return len(self.example.skipped)

    def rows_skipped_malformed(self) -> int:
        return len(self.rows.skipped)


@entry_point
def main(argv: list[str] | None = None) -> None:
    stage.run(SupervisedStage(), argv)


if __name__ == "__main__":
    main()
