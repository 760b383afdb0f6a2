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
  trainer's own skip-ahead, which would read and collate every skipped batch, is turned off);
- every shard the plan reads is held to its source's manifest (``ShardCheck``): present and of the
  manifest's size before training starts (a stat each), of the manifest's sha256 when the stream first
  opens it (one extra read of each shard a job reads, once per job; hashing runs at about 2 GB/s).
  Before, a truncated or missing shard ended the job when the stream reached it, hours in, and a
  shard whose bytes changed in place (a bit flip) was trained on as it was.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from medmo_pipeline.atomic import file_sha256, write_json_atomic
from medmo_pipeline.config import MixtureRecipe, OptimRecipe, stable_hash
from medmo_pipeline.data import mixture, shards, stream

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


class ShardCheck:
    """The plan's shards held to their sources' manifests (see the module doc). Construction checks
    each manifest against the corpus index's data version (when given), and each shard's presence
    and size; ``verify(path)`` checks a shard's sha256 the first time it is asked. Both raise a
    ValueError naming the file."""

    def __init__(self, plan: dict, index: dict | None = None):
        self.digests: dict[str, str] = {}
        self.verified: set[str] = set()
        problems = []
        for name, info in plan["sources"].items():
            directory = Path(info["path"])
            manifest_path = directory / shards.MANIFEST_NAME
            try:
                manifest = shards.read_manifest(directory)
            except (OSError, ValueError, KeyError, TypeError) as error:
                problems.append(f"{manifest_path}: unreadable ({error})")
                continue
            recorded = ((index or {}).get("sources", {}).get(name) or {}).get("data_version")
            if recorded and shards.manifest_hash(manifest) != recorded:
                problems.append(f"{manifest_path}: changed since curation (its hash is not the data version "
                                f"{recorded[:12]} the corpus index records)")
            listed = {shard["name"]: shard for shard in manifest["shards"]}
            for shard in info["shards"]:
                path = Path(shard["path"])
                entry = listed.get(path.name) if path.parent == directory else None
                if entry is None:
                    problems.append(f"{path}: not listed in {manifest_path}")
                elif not path.is_file():
                    problems.append(f"{path}: missing (listed in {manifest_path})")
                elif (size := path.stat().st_size) != entry["bytes"]:
                    problems.append(f"{path}: {size} bytes, its manifest says {entry['bytes']} "
                                    "(truncated or replaced since curation)")
                else:
                    self.digests[str(path)] = entry["sha256"]
        if problems:
            raise ValueError("stage shards do not match their manifests; re-curate the sources "
                             "(corpus_shards):\n  " + "\n  ".join(problems))

    def verify(self, path: Path) -> None:
        key = str(path)
        if key in self.verified:
            return
        if file_sha256(path) != self.digests[key]:
            raise ValueError(f"{path}: sha256 differs from its manifest (the shard changed since curation); "
                             "re-curate its source (corpus_shards)")
        self.verified.add(key)


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
    index: dict | None = None  # the corpus index, whose data versions the manifests are checked against

    def __post_init__(self):
        self.world = world_size() if self.per_rank else 1
        self.part = rank() if self.per_rank else 0
        self.shards = ShardCheck(self.plan, self.index)
        self.stream = stream.MixtureStream(self.plan, seed=self.seed, before_shard=self.shards.verify)
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
