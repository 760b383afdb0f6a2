"""Reinforcement-learning job: GRPO with a DAPO-style loss and verifiable rewards.

    python -m medmo_pipeline.training.grpo --recipe embedded \
        --parent .medmo/checkpoints/stage3/<key> --corpus .medmo/corpus/index/<v>.json \
        --output .medmo/checkpoints/rl/<key>

Rewards are chosen by name from ``medmo_pipeline.rewards``' registry with weights from the
recipe; TRL logs each component's mean and std per step, which go to MLflow, the asset metadata
and reward-trend plots (box and tag rewards) beside the policy. Every ``completion_log_every``
steps a few sampled completions with their rewards are logged. Prompts ask for the recipe's
``reply_format``; which rows train, and how over-long prompts are handled, is ``rl_rows``' job.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from medmo_pipeline.jobs import checked_recipe, entry_point
from medmo_pipeline.reply_format import ReplyFormat, rl_prompt
from medmo_pipeline.training import common

TREND_PLOT = "box_reward_trend.png"
# Reward-trend plots beside the policy: file -> (logged key, title).
TREND_PLOTS = {
    TREND_PLOT: ("rewards/box/mean", "box reward during RL (mean, rolling std, trend)"),
    "tag_reward_trend.png": ("rewards/tag_count/mean", "tag-count reward during RL (mean, rolling std, trend)"),
}


def rl_dataset(rows: list[dict], reply_format: ReplyFormat = "plain"):
    """Sample rows -> GRPO prompts (string content; TRL inserts the image placeholders) + reward columns."""
    features = rl_features()
    examples = [rl_example(row, reply_format) for row in rows]
    return common.in_memory_dataset({name: [e[name] for e in examples] for name in features}, features, rows,
                                    variant=reply_format)


def rl_features():
    """Columns of a GRPO example: the prompt, its PNG images and what the rewards compare against."""
    import datasets

    return datasets.Features(
        {
            "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
            "images": datasets.List(datasets.Image()),
            "task": datasets.Value("string"),
            "answer": datasets.Value("string"),
            "choices": datasets.List(datasets.Value("string")),
            "boxes": datasets.List({k: datasets.Value("float64") for k in ("x1", "y1", "x2", "y2")}
                                   | {"label": datasets.Value("string")}),
            "image_width": datasets.Value("int32"),
            "image_height": datasets.Value("int32"),
        }
    )


def rl_example(row: dict, reply_format: ReplyFormat = "plain") -> dict:
    """A sample row as a GRPO example (``rl_features``), its prompt asking for ``reply_format``."""
    return {
        "prompt": [{"role": "user", "content": rl_prompt(common.prompt_text(row), reply_format)}],
        "images": common.image_cells(row),
        "task": row["task"],
        "answer": row["answer"],
        "choices": list(row["choices"]),
        "boxes": list(row["boxes"]),
        "image_width": row["images"][0]["width"] if row["images"] else 0,
        "image_height": row["images"][0]["height"] if row["images"] else 0,
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


@entry_point
def main(argv: list[str] | None = None) -> None:
    args = common.training_argument_parser(__doc__.splitlines()[0], default_stage="rl").parse_args(argv)
    recipe, code_version = checked_recipe(args, args.stage)
    stage = recipe.rl

    from medmo_pipeline.jobs import job_reporter

    with job_reporter() as reporter:
        started = time.time()
        import mlflow
        from transformers import TrainerCallback
        from trl import GRPOTrainer

        from medmo_pipeline import tracking
        from medmo_pipeline.data import corpus, mixture
        from medmo_pipeline.model.loading import load_processor, set_image_resolution
        from medmo_pipeline.model.patch_projection import use_patchwise_projection
        from medmo_pipeline.plots import markdown_image, plot_reward_trend
        from medmo_pipeline.rewards import build_reward_functions
        from medmo_pipeline.training import resume, rl_rows, streamed

        index = corpus.load_index(args.corpus)
        plan = streamed.stage_plan(index, stage.mixture)
        base = recipe.base_model
        processor = load_processor(args.parent, trust_remote_code=base.trust_remote_code)
        set_image_resolution(processor, stage.image.max_pixels, stage.image.min_pixels)
        left_pad_prompts(processor)
        row_counts = Counter()

        def prompt_example(row: dict) -> dict | None:
            kept, outcome = rl_rows.fit_prompt(row, processor, stage.grpo.max_prompt_length,
                                               stage.grpo.overlong_prompts, stage.reply_format)
            row_counts[outcome] += 1
            return None if kept is None else rl_example(kept, stage.reply_format)

        reporter.log(f"rl: {plan['planned_samples']} prompts planned per pass over {sorted(plan['sources'])}")

        reward_functions, weights = build_reward_functions(stage.rewards)
        samples: list[dict] = []
        start = common.resume_plan(args, stage.optim, code_version, index["data_version"])
        reporter.log(start.describe())
        optim, g = stage.optim, stage.grpo
        # Prompt groups span ranks, so every rank reads the one stream and takes its slice of each batch.
        prompts_per_step = (optim.per_device_train_batch_size * optim.gradient_accumulation_steps
                            * streamed.world_size()) // g.num_generations
        decodable = common.skip_undecodable(prompt_example, reporter.log)
        data = streamed.StageData(plan, recipe.seed, rl_features(), decodable, examples_per_step=prompts_per_step,
                                  per_rank=False, resume_from=start.checkpoint, resume_step=start.step or 0)
        config = grpo_config(stage, processor, output_dir=start.work_dir, seed=recipe.seed, reward_weights=weights,
                             shuffle_dataset=False,  # the stream is already in its seeded order
                             **data.trainer_arguments(optim, global_examples_per_step=prompts_per_step))
        # Loaded after its trainer configuration, so that a ZeRO-3 config partitions it as it loads.
        model = common.load_for_training(args.parent, base, stage.optim, config)
        use_patchwise_projection(model)  # same values, a cheaper backward
        history: list[dict] = start.history()
        section = recipe.section("rl")

        class CompletionLog(TrainerCallback):
            def on_step_end(self, args_, state, control, **kwargs):
                if state.is_world_process_zero and state.global_step % stage.completion_log_every == 0 and samples:
                    shown = samples[: min(4, len(samples))]
                    reporter.log(f"step {state.global_step} sampled completions: " + json.dumps(shown, default=str))
                    mlflow.log_dict(shown, f"completions/step_{state.global_step:06d}.json")

        with common.main_process_mlflow_run(
            recipe.tracking.experiment, f"rl-{code_version[:8]}", params=section,
            tags={"stage": "rl", "code_version": code_version, "corpus_data_version": index["data_version"],
                  "parent": args.parent},
        ) as run:
            trainer = GRPOTrainer(
                model=model,
                reward_funcs=observed(reward_functions, samples),
                args=config,
                train_dataset=data.dataset,
                processing_class=processor,
                callbacks=[common.reporting_callback(reporter, mlflow, history), CompletionLog(), data.callback(),
                           resume.completion_callback(start.key)],
            )
            result = trainer.train(resume_from_checkpoint=str(start.checkpoint) if start.checkpoint else None)
            state_dict = common.gathered_state_dict(trainer)
            if not resume.is_main_process():
                return  # rank 0 publishes, logs and reports
            reporter.log(f"rl rows: {rl_rows.describe(row_counts)} (prompt limit {stage.grpo.max_prompt_length}, "
                         f"overlong prompts: {stage.grpo.overlong_prompts})")
            metrics = {"steps": int(result.global_step), "resumed_from_step": start.step,
                       "planned_samples": plan["planned_samples"],
                       "rows_skipped_undecodable": len(decodable.skipped),
                       "train_seconds": round(result.metrics.get("train_runtime", 0.0), 2),
                       **{f"rows_{outcome}": n for outcome, n in sorted(row_counts.items())}}
            drawn = data.streamed(int(result.global_step))
            metrics.update(reward_summary(history, [fn.__name__ for fn in reward_functions]))
            constant = [fn.__name__ for fn in reward_functions if metrics.get(f"reward_{fn.__name__}_distinct_means") == 1]
            if constant and metrics["steps"] > 1:
                reporter.log(f"warning: reward component(s) {constant} logged one value at every step: no signal")
            lineage = tracking.lineage_record(
                stage="rl", parent=common.parent_reference(args.parent), corpus=corpus.lineage_view(index),
                mixture={"recipe": stage.mixture.model_dump(mode="json"), "rows": mixture.describe(plan),
                         "streamed": drawn, "drawn": streamed.drawn_by_task(plan, drawn)},
                recipe_name=recipe.name, recipe_section=section, recipe_hash=code_version,
                mlflow_run_id=run.info.run_id, started=started, metrics=metrics,
            ) | {"resume": start.lineage()}

            def reward_trend(directory: Path):
                for name, (key, title) in TREND_PLOTS.items():
                    plot_reward_trend(history, key, directory / name, title)  # none when the key was never logged

            data_version, lineage = common.publish_checkpoint(
                trainer.model, processor, args.output, lineage=lineage, recipe_section=section,
                history=history, title=f"rl ({recipe.name})", extra=reward_trend, state_dict=state_dict,
            )
            trends = {name: args.output / name for name in TREND_PLOTS if (args.output / name).is_file()}
            mlflow.set_tag("data_version", data_version)
            registered = tracking.register_if_chosen(recipe.tracking.register_models, "rl", args.output, lineage)
            for name in ("lineage.json", "recipe.yaml", "training_curves.png", *TREND_PLOTS):
                if (args.output / name).exists():
                    mlflow.log_artifact(str(args.output / name))
        resume.finish(start)
        from medmo_pipeline.training.sft import checkpoint_metadata

        meta = checkpoint_metadata(args.output, {**lineage, "registered_model": registered}, metrics,
                                   common.elapsed(started))
        from medmo_pipeline.jobs import Md

        for name, path in trends.items():
            key = name.removesuffix(".png")
            meta[key] = path.resolve()
            meta[f"{key}_plot"] = Md(markdown_image(path, key.replace("_", " ")))
        meta["rewards_per_step"] = reward_table(history, [fn.__name__ for fn in reward_functions])
        reporter.report(meta, data_version=data_version)


def left_pad_prompts(processor) -> None:
    """GRPOTrainer generates from left-padded prompts but re-encodes them for scoring with the
    processor's default side; they must agree or Qwen-VL's image positions shift by the padding."""
    processor.tokenizer.padding_side = "left"


def grpo_config(stage, processor, *, output_dir, seed: int, reward_weights: list[float], **overrides):
    """TRL GRPOConfig from the recipe's RL section (``overrides`` replace trainer arguments)."""
    from trl import GRPOConfig

    g = stage.grpo
    arguments = {**common.trainer_arguments(stage.optim, output_dir=output_dir, seed=seed), **overrides}
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
