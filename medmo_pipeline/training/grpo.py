"""Reinforcement-learning job: GRPO with a DAPO-style loss and verifiable rewards.

    python -m medmo_pipeline.training.grpo --recipe embedded \
        --parent .medmo/checkpoints/stage3/<key> --corpus .medmo/corpus/index/<v>.json \
        --output .medmo/checkpoints/rl/<key>

Rewards are chosen by name from ``medmo_pipeline.rewards``' registry with weights from the
recipe; TRL logs each component's mean and std per step, which go to MLflow, the asset metadata
and reward-trend plots (box and tag rewards) beside the policy. Every ``completion_log_every``
steps a few sampled completions with their rewards are logged. Prompts ask for the recipe's
``reply_format``; which rows train, and how over-long prompts are handled, is ``rl_rows``' job.
The job's skeleton (resume, MLflow, lineage, publishing, metadata) is ``training.stage``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from medmo_pipeline.jobs import entry_point
from medmo_pipeline.training import stage, trainer_setup
from medmo_pipeline.training.examples import rl_example
from medmo_pipeline.training.stage import StageRun

TREND_PLOT = "box_reward_trend.png"
# Reward-trend plots beside the policy: file -> (logged key, title).
TREND_PLOTS = {
    TREND_PLOT: ("rewards/box/mean", "box reward during RL (mean, rolling std, trend)"),
    "tag_reward_trend.png": ("rewards/tag_count/mean", "tag-count reward during RL (mean, rolling std, trend)"),
}


def observed(functions: list, samples: list[dict]):
    """Wrap reward functions so the latest completions and their rewards can be logged."""

    def wrap(fn):
        def reward(prompts, completions, **columns):
            values = fn(prompts, completions, **columns)
            tasks = columns.get("task") or [""] * len(completions)
            del samples[len(completions):]
            for i, (completion, task, value) in enumerate(zip(completions, tasks, values)):
                if i == len(samples):
                    samples.append({})
                text = completion[-1]["content"] if isinstance(completion, list) else str(completion)
                samples[i].update({"task": task, "completion": text, fn.__name__: value})
            return values

        reward.__name__ = fn.__name__
        return reward

    return [wrap(fn) for fn in functions]


class ReinforcementStage(stage.StageJob):
    description = __doc__.splitlines()[0]
    default_stage = "rl"
    artifacts = tuple(TREND_PLOTS)

    def stage_name(self, args) -> str:
        return "rl"  # the recipe has one RL section, whatever --stage says

    def recipe_stage(self, recipe, name: str):
        return recipe.rl

    def plan_message(self, run: StageRun) -> str:
        return f"rl: {run.plan['planned_samples']} prompts planned per pass over {sorted(run.plan['sources'])}"

    def prepare(self, run: StageRun) -> None:
        from medmo_pipeline.data.model_images import skip_undecodable
        from medmo_pipeline.model.patch_projection import use_patchwise_projection
        from medmo_pipeline.rewards import build_reward_functions
        from medmo_pipeline.training import rl_rows, streamed
        from medmo_pipeline.training.examples import skip_bad_rows

        rl = run.stage
        run.processor = processor = run.load_processor()
        left_pad_prompts(processor)
        self.row_counts = Counter()

        def prompt_example(row: dict) -> dict | None:
            kept, outcome = rl_rows.fit_prompt(row, processor, rl.grpo.max_prompt_length,
                                               rl.grpo.overlong_prompts, rl.reply_format)
            self.row_counts[outcome] += 1
            return None if kept is None else rl_example(kept, rl.reply_format)

        self.reward_functions, weights = build_reward_functions(rl.rewards)
        self.samples: list[dict] = []
        optim, g = rl.optim, rl.grpo
        # Prompt groups span ranks, so every rank reads the one stream and takes its slice of each batch.
        completions = optim.per_device_train_batch_size * optim.gradient_accumulation_steps * streamed.world_size()
        prompts_per_step = completions // g.num_generations
        if not prompts_per_step:  # TRL checks divisibility later; no whole group at all made a step of no prompt
            raise ValueError(f"rl.grpo.num_generations ({g.num_generations}) is more than a step's "
                             f"{completions} completions (optim.per_device_train_batch_size x "
                             "gradient_accumulation_steps x processes): no prompt's group fits a step")
        self.decodable = skip_undecodable(prompt_example, run.reporter.log, pixels=True)
        # Outermost: a malformed row never reaches the decoder, and a stream of only rows left out
        # (malformed, undecodable, no reward signal, too long) ends the job instead of reading for ever.
        self.rows = skip_bad_rows(self.decodable, run.reporter.log, needs_reply=False,
                                  give_up_after=stage.skip_limit(run.plan))
        run.data = run.stream(None, self.rows,  # no features: the examples hold decoded images
                              examples_per_step=prompts_per_step, per_rank=False)
        run.config = grpo_config(rl, processor, output_dir=run.start.work_dir, seed=run.recipe.seed,
                                 reward_weights=weights,
                                 shuffle_dataset=False,  # the stream is already in its seeded order
                                 **run.data.trainer_arguments(optim, global_examples_per_step=prompts_per_step))
        # Loaded after its trainer configuration, so that a ZeRO-3 config partitions it as it loads.
        run.model = trainer_setup.load_for_training(run.args.parent, run.recipe.base_model, optim, run.config)
        use_patchwise_projection(run.model)  # same values, a cheaper backward

    def callbacks(self, run: StageRun) -> list:
        import mlflow
        from transformers import TrainerCallback

        samples, every, reporter = self.samples, run.stage.completion_log_every, run.reporter

        class CompletionLog(TrainerCallback):
            def on_step_end(self, args_, state, control, **kwargs):
                if state.is_world_process_zero and state.global_step % every == 0 and samples:
                    shown = samples[: min(4, len(samples))]
                    reporter.log(f"step {state.global_step} sampled completions: " + json.dumps(shown, default=str))
                    mlflow.log_dict(shown, f"completions/step_{state.global_step:06d}.json")

        return [CompletionLog()]

    def trainer(self, run: StageRun, callbacks: list):
        from trl import GRPOTrainer

        return GRPOTrainer(
            model=run.model,
            reward_funcs=observed(self.reward_functions, self.samples),
            args=run.config,
            train_dataset=run.data.dataset,
            processing_class=run.processor,
            callbacks=callbacks,
        )

    def rows_skipped_undecodable(self) -> int:
        return len(self.decodable.skipped)  # every rank reads the one shared stream: rank 0 saw them all

    def rows_skipped_malformed(self) -> int:
        return len(self.rows.skipped)

    def metrics(self, run: StageRun, result) -> dict:
        from medmo_pipeline.training import rl_rows

        g = run.stage.grpo
        run.reporter.log(f"rl rows: {rl_rows.describe(self.row_counts)} (prompt limit {g.max_prompt_length}, "
                         f"overlong prompts: {g.overlong_prompts})")
        metrics = {"steps": int(result.global_step), "resumed_from_step": run.start.step,
                   "planned_samples": run.plan["planned_samples"],
                   "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
                   **{f"rows_{outcome}": n for outcome, n in sorted(self.row_counts.items())}}
        names = [fn.__name__ for fn in self.reward_functions]
        metrics.update(reward_summary(run.history, names))
        constant = [name for name in names if metrics.get(f"reward_{name}_distinct_means") == 1]
        if constant and metrics["steps"] > 1:
            run.reporter.log(f"warning: reward component(s) {constant} logged one value at every step: no signal")
        return metrics

    def write_files(self, run: StageRun, directory: Path) -> None:
        from medmo_pipeline.plots import plot_reward_trend

        for name, (key, title) in TREND_PLOTS.items():
            plot_reward_trend(run.history, key, directory / name, title)  # none when the key was never logged

    def add_metadata(self, run: StageRun, meta: dict) -> None:
        from medmo_pipeline.jobs import Md
        from medmo_pipeline.plots import markdown_image

        for name in TREND_PLOTS:
            path = run.args.output / name
            if not path.is_file():
                continue
            key = name.removesuffix(".png")
            meta[key] = path.resolve()
            meta[f"{key}_plot"] = Md(markdown_image(path, key.replace("_", " ")))
        meta["rewards_per_step"] = reward_table(run.history, [fn.__name__ for fn in self.reward_functions])


@entry_point
def main(argv: list[str] | None = None) -> None:
    stage.run(ReinforcementStage(), argv)


def left_pad_prompts(processor) -> None:
    """GRPOTrainer generates from left-padded prompts but re-encodes them for scoring with the
    processor's default side; they must agree or Qwen-VL's image positions shift by the padding."""
    processor.tokenizer.padding_side = "left"


def grpo_config(stage, processor, *, output_dir, seed: int, reward_weights: list[float], **overrides):
    """TRL GRPOConfig from the recipe's RL section (``overrides`` replace trainer arguments)."""
    from trl import GRPOConfig

    g = stage.grpo
    arguments = {**trainer_setup.trainer_arguments(stage.optim, output_dir=output_dir, seed=seed), **overrides}
    return GRPOConfig(
        **arguments,
        num_generations=g.num_generations,
        max_completion_length=g.max_completion_length,
        epsilon=g.epsilon,
        epsilon_high=g.epsilon_high if g.epsilon_high is not None else g.epsilon,
        beta=g.beta,
        sync_ref_model=g.sync_ref_model,
        ref_model_sync_steps=g.ref_model_sync_steps,
        ref_model_mixup_alpha=g.ref_model_mixup_alpha,
        loss_type=g.loss_type,
        scale_rewards=g.scale_rewards,
        temperature=g.temperature,
        mask_truncated_completions=g.mask_truncated_completions,
        reward_weights=reward_weights,
        # No answer contains an image/video placeholder; never sample one.
        generation_kwargs={"suppress_tokens": vision_token_ids(processor.tokenizer)},
    )


def vision_token_ids(tokenizer) -> list[int]:
    """Ids of the image/video placeholder tokens a completion must never contain."""
    names = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>")
    vocab = tokenizer.get_vocab()
    return sorted(vocab[name] for name in names if name in vocab)


def reward_summary(history: list[dict], names: list[str]) -> dict:
    """First and last logged mean (and last std) of each reward component, and how many distinct
    means it logged: a component stuck at one value across steps gives RL no signal."""
    out = {}
    for name in names:
        means = [h[f"rewards/{name}/mean"] for h in history if f"rewards/{name}/mean" in h]
        stds = [h[f"rewards/{name}/std"] for h in history if f"rewards/{name}/std" in h]
        if means:
            out[f"reward_{name}_first"] = round(means[0], 4)
            out[f"reward_{name}_last"] = round(means[-1], 4)
            out[f"reward_{name}_distinct_means"] = len({round(m, 6) for m in means})
        if stds:
            out[f"reward_{name}_std_last"] = round(stds[-1], 4)
    return out


def reward_table(history: list[dict], names: list[str], max_rows: int = 25):
    """Markdown table of each reward component's mean and std per logged step (evenly thinned)."""
    from medmo_pipeline.jobs import Md

    rows = [h for h in history if any(f"rewards/{n}/mean" in h for n in names)]
    if len(rows) > max_rows:
        rows = [rows[round(i * (len(rows) - 1) / (max_rows - 1))] for i in range(max_rows)]
    header = "| step | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"

    def cell(row, name):
        mean, std = row.get(f"rewards/{name}/mean"), row.get(f"rewards/{name}/std")
        return "-" if mean is None else f"{mean:.3f} ± {std or 0:.3f}"

    return Md(header + "\n".join(f"| {r['step']} | " + " | ".join(cell(r, n) for n in names) + " |" for r in rows))


if __name__ == "__main__":
    main()
