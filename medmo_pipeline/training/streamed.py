"""A training stage's data as a stream: plan -> trainer dataset, its length in steps, its saved position.

The SFT and GRPO jobs build a ``StageData`` from the stage's corpus index and hand ``dataset`` to the
trainer, with ``trainer_arguments()`` merged into their trainer configuration and ``callback()`` among
the callbacks (before the one that marks a checkpoint complete). Then:

- the trainer reads the stage's shards as they are needed (``data.stream``), one part per rank for
  SFT (``per_rank``), one shared part that each rank slices for GRPO (its prompt groups span ranks);
- the number of optimizer steps is the recipe's ``max_steps``, else ``num_train_epochs`` passes over
  the plan's samples;
- every saved checkpoint holds ``stream_position-rank<r>.json``: how many examples the part had
  used at that step and the stream index to go on from. A resumed job starts the stream there (the
  trainer's own skip-ahead, which would read and collate every skipped batch, is turned off).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medmo_pipeline.atomic import write_json_atomic
from medmo_pipeline.config import MixtureRecipe, OptimRecipe, stable_hash
from medmo_pipeline.data import mixture, stream

POSITION_FILE = "stream_position-rank{rank}.json"
SAMPLE_LOG_ENV = "MEDMO_SAMPLE_LOG"  # a JSON-lines file receiving every example's stream index and id


def stage_plan(index: dict, recipe_mixture: MixtureRecipe) -> dict:
    """The plan the mixture asset stored in the index, or a fresh one when it is absent or stale."""
    stored = index.get("plan")
    if stored and stored.get("mixture_hash") == stable_hash(recipe_mixture.model_dump(mode="json")):
        return stored
    return mixture.plan(index, recipe_mixture)


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class StageData:
    """One stage's stream, sized for a trainer.

    ``examples_per_step``: examples one part hands the trainer per optimizer step (SFT: batch size x
    accumulation; GRPO: the distinct prompts all ranks use per step). ``passes``: how many times the
    plan is gone through when the recipe gives no ``max_steps``.
    """

    plan: dict
    seed: int
    features: object
    to_example: Callable[[dict], dict | None]
    examples_per_step: int
    per_rank: bool = True
    resume_from: Path | None = None
    resume_step: int = 0
    positions: stream.PositionLog = field(default_factory=stream.PositionLog)

    def __post_init__(self):
        self.world = world_size() if self.per_rank else 1
        self.part = rank() if self.per_rank else 0
        self.stream = stream.MixtureStream(self.plan, seed=self.seed)
        self.start = self._start()
        log = os.environ.get(SAMPLE_LOG_ENV)
        self.dataset = stream.trainer_dataset(
            self.stream, features=self.features, to_example=self.to_example, world=self.world,
            starts={self.part: self.start}, positions=self.positions, sample_log=Path(log) if log else None)

    def _start(self) -> tuple[int, int]:
        """(examples used, stream index) this part resumes from; (0, 0) on a fresh start."""
        if self.resume_from is None:
            return 0, 0
        path = Path(self.resume_from) / POSITION_FILE.format(rank=rank())
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved["plan_version"] != self.plan["version"]:
                raise ValueError(f"{path}: saved for data plan {saved['plan_version'][:12]}, "
                                 f"this run reads {self.plan['version'][:12]}")
            return saved["examples"], saved["index"]
        used = self.resume_step * self.examples_per_step  # a checkpoint from before positions were saved
        return used, used

    def max_steps(self, optim: OptimRecipe, *, global_examples_per_step: int) -> int:
        """The recipe's ``max_steps``, else its epochs over the plan's samples."""
        if optim.max_steps > 0:
            return optim.max_steps
        return max(1, math.ceil(optim.num_train_epochs * self.plan["planned_samples"] / global_examples_per_step))

    def trainer_arguments(self, optim: OptimRecipe, *, global_examples_per_step: int) -> dict:
        """Trainer arguments a stream needs (merged over ``trainer_setup.trainer_arguments``)."""
        return {"max_steps": self.max_steps(optim, global_examples_per_step=global_examples_per_step),
                "ignore_data_skip": True,  # the stream starts at the saved position instead
                "dataloader_num_workers": 0}  # positions are recorded where examples are made

    def streamed(self, step: int) -> dict[str, int]:
        """Samples of each source among the stream's first ``step`` steps (all parts together)."""
        position = step * self.examples_per_step * self.world
        return self.stream.counts_at(position)

    def callback(self):
        """A TrainerCallback writing this rank's stream position into each saved checkpoint."""
        from transformers import TrainerCallback

        data = self

        class StreamPosition(TrainerCallback):
            def on_save(self, args, state, control, **kwargs):
                used = state.global_step * data.examples_per_step
                index = data.positions.next_index(data.part, used, data.start)
                directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                write_json_atomic(directory / POSITION_FILE.format(rank=rank()),
                                  {"step": state.global_step, "part": data.part, "parts": data.world,
                                   "examples": used, "index": index, "plan_version": data.plan["version"]})

        return StreamPosition()


def drawn_by_task(plan: dict, streamed: dict[str, int]) -> dict[str, dict[str, int]]:
    """Samples streamed per source, split over its tasks in proportion to the source's weighted rows
    (exact per source; per task, the expected split)."""
    repeats = plan.get("task_repeats") or {}
    out = {}
    for source, count in streamed.items():
        rows = plan["sources"][source]["rows"]
        weighted = {task: n * repeats.get(task, 1) for task, n in rows.items()}
        total = sum(weighted.values())
        out[source] = {task: round(count * n / total) for task, n in weighted.items()}
    return out
