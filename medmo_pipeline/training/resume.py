"""Resumable training: trainer checkpoints in a work directory that only the same run can resume.

Where: ``<output's parent>/.resume/<stage>/<key>/checkpoint-<step>/``, the trainer's own layout
(weights, optimizer, scheduler, RNG states per rank, trainer state with the step and so the data
position), saved every ``optim.save_steps`` steps.

The key hashes everything besides code that decides the weights: the stage, its recipe section
hash, the parent checkpoint's data version, the corpus (mixture) data version and the number of
processes. A re-run with the same key resumes from the newest *complete* checkpoint under it; a run
with another key never looks inside another key's directory. Finding another key's unfinished run
of the same stage is a fresh start beside it or an error naming what differs, as the recipe's
``optim.on_mismatch`` says.

A checkpoint is complete once ``medmo_complete.json`` is in it: written after the trainer finished
saving on every rank. A job killed mid-save leaves a directory without it, which is never resumed
and is removed by the next run. Once the stage's checkpoint is published the work directory goes.

The trainer's state files are pickles (``torch.load(weights_only=True)`` on resume); they are only
ever read from this pipeline's own work directory, never from a published or downloaded checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from medmo_pipeline.atomic import write_json_atomic
from medmo_pipeline.config import stable_hash

MARKER = "medmo_complete.json"
KEY_FILE = "resume_key.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class ResumeMismatchError(RuntimeError):
    """An unfinished run of the stage exists for other inputs, and the recipe says to stop."""


@dataclass(frozen=True)
class ResumeKey:
    """What a checkpoint must share with a run for the run to resume from it."""

    stage: str
    recipe_hash: str
    parent_data_version: str
    corpus_data_version: str
    world_size: int = 1

    def digest(self) -> str:
        return stable_hash(asdict(self))

    def differences(self, other: dict) -> list[str]:
        """``field: theirs -> ours`` for every field that differs from another key (as stored)."""
        return [f"{name}: {other.get(name)!r} -> {value!r}" for name, value in asdict(self).items()
                if other.get(name) != value]


@dataclass(frozen=True)
class ResumePlan:
    """Where this run saves, what it resumes from, and which unfinished runs it left alone."""

    key: ResumeKey
    work_dir: Path
    checkpoint: Path | None = None
    step: int | None = None
    ignored: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        if self.checkpoint is not None:
            return f"resuming {self.key.stage} from step {self.step} ({self.checkpoint})"
        text = f"{self.key.stage}: no checkpoint to resume for key {self.key.digest()}; starting at step 0"
        for other in self.ignored:
            text += f"; not resuming {other['path']} ({'; '.join(other['differences'])})"
        return text

    def lineage(self) -> dict:
        """The ``resume`` entry of lineage.json and of the asset metadata."""
        resumed = {"path": str(self.checkpoint), "step": self.step} if self.checkpoint is not None else None
        return {"key": self.key.digest(), "inputs": asdict(self.key), "resumed_from": resumed,
                "ignored": self.ignored}

    def history(self) -> list[dict]:
        """Logged metrics up to the resumed step (from the trainer state), so curves cover the whole run."""
        if self.checkpoint is None:
            return []
        state = json.loads((self.checkpoint / "trainer_state.json").read_text())
        return [{"step": entry["step"], **{k: float(v) for k, v in entry.items()
                                           if k != "step" and isinstance(v, (int, float))}}
                for entry in state.get("log_history", []) if "step" in entry]


def work_root(output: Path, stage: str) -> Path:
    return Path(output).parent / ".resume" / stage


def plan(output: Path, key: ResumeKey, on_mismatch: Literal["fresh", "error"], *, main_process: bool = True
         ) -> ResumePlan:
    """Decide where this run saves and what it resumes from (every rank computes the same answer;
    only the main process changes files)."""
    root = work_root(output, key.stage)
    work = root / key.digest()
    ignored = [{"path": str(other), "step": newest_complete(other)[1],
                "differences": key.differences(stored_key(other))}
               for other in unfinished_runs(root) if other != work]
    if ignored and on_mismatch == "error":
        raise ResumeMismatchError(
            f"{key.stage}: an unfinished run with other inputs exists and the recipe sets optim.on_mismatch: error. "
            + "; ".join(f"{o['path']} (step {o['step']}; {', '.join(o['differences'])})" for o in ignored)
            + ". Delete it to start this run fresh, restore its inputs to resume it, or set on_mismatch: fresh."
        )
    if main_process:
        remove_incomplete(work)
        work.mkdir(parents=True, exist_ok=True)
        write_json_atomic(work / KEY_FILE, asdict(key))
    checkpoint, step = newest_complete(work)
    return ResumePlan(key=key, work_dir=work, checkpoint=checkpoint, step=step, ignored=ignored)


def checkpoints(work: Path) -> list[tuple[int, Path]]:
    """``checkpoint-<step>`` directories under ``work``, oldest first."""
    if not work.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in work.iterdir() if p.is_dir() and (m := _CHECKPOINT.fullmatch(p.name))]
    return sorted(found)


def newest_complete(work: Path) -> tuple[Path | None, int | None]:
    complete = [(step, path) for step, path in checkpoints(work) if (path / MARKER).is_file()]
    return (complete[-1][1], complete[-1][0]) if complete else (None, None)


def unfinished_runs(root: Path) -> list[Path]:
    """Work directories under a stage's root that hold a complete checkpoint."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and newest_complete(p)[0] is not None)


def stored_key(work: Path) -> dict:
    path = work / KEY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def remove_incomplete(work: Path) -> None:
    for _, path in checkpoints(work):
        if not (path / MARKER).is_file():
            shutil.rmtree(path, ignore_errors=True)


def mark_complete(checkpoint: Path, key: ResumeKey, step: int) -> None:
    """Mark a saved checkpoint complete, then drop every older one (the newest complete one suffices)."""
    write_json_atomic(checkpoint / MARKER, {"step": step, "key": key.digest()})
    for older_step, path in checkpoints(checkpoint.parent):
        if older_step < step:
            shutil.rmtree(path, ignore_errors=True)


def finish(plan_: ResumePlan) -> None:
    """The stage's checkpoint is published: its work directory is no longer needed."""
    shutil.rmtree(plan_.work_dir, ignore_errors=True)


def completion_callback(key: ResumeKey):
    """A TrainerCallback that marks each checkpoint complete once every rank has saved it."""
    from transformers import TrainerCallback

    class CheckpointCompletion(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            barrier()  # ranks write their own RNG state (and DeepSpeed shards): wait for all of them
            if state.is_world_process_zero:
                mark_complete(Path(args.output_dir) / f"checkpoint-{state.global_step}", key, state.global_step)
            barrier()

    return CheckpointCompletion()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def summed_over_ranks(value: int) -> int:
    """``value`` summed over every rank of the job (a collective: every rank calls it); ``value``
    itself in a job of one process."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 of a torchrun/DeepSpeed job, or the only process."""
    return os.environ.get("RANK", "0") == "0"
