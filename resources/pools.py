"""How many slots the ``training`` pool has: as many training jobs as fit the GPUs.

Training assets queue for slots of the Dagster pool ``training``; curation and evaluation use no pool
and run beside them. The slot count is the GPUs the profile declares (its ``gpus:``; for the local
launcher, when it declares none, the GPUs this machine has) divided by the GPUs one training job asks
for (its size: nodes x gpus_per_node; the largest of the SFT and RL jobs), at least one. A training job
that asks for no GPU gets one slot: locally it sees every GPU, so two would share them.

``MedmoInstance`` gives this number to Dagster as the pools' default limit (``concurrency: pools:
default_limit``), so the pool follows the profile without a command. A ``default_limit`` written in
the instance's ``dagster.yaml``, or ``dagster instance concurrency set training N``, still wins.
"""

from __future__ import annotations

from collections.abc import Mapping

from medmo_pipeline.launch.gpus import visible_devices
from resources.launcher import JobSize, Launcher
from resources.profiles import launcher_from_profile, selected_profile

TRAINING_POOL = "training"
TRAINING_JOBS = ("medmo_pipeline.training.sft", "medmo_pipeline.training.grpo")


def is_training(size_key: str) -> bool:
    """A ``sizes`` key that names a training job: its module, or a stage's asset key."""
    return size_key in TRAINING_JOBS or size_key.endswith("_checkpoint") or size_key == "rl_policy"


def job_gpus(size: JobSize) -> int:
    return size.nodes * size.gpus_per_node


def training_job_gpus(launcher: Launcher) -> int:
    """The GPUs of the largest training job the launcher starts."""
    sizes = [launcher.sizes.get(module, launcher.size) for module in TRAINING_JOBS]
    sizes += [size for key, size in launcher.sizes.items() if is_training(key)]
    return max(job_gpus(size) for size in sizes)


def training_slots(env: Mapping[str, str] | None = None) -> int:
    """The training pool's slot count for the active profile (``resources.profiles``)."""
    profile = selected_profile(env)
    per_job = training_job_gpus(launcher_from_profile(env=env))
    gpus = profile["gpus"]
    if gpus is None:
        gpus = len(visible_devices(env)) if profile["launcher"] == "local" else 0
    return max(1, gpus // per_job) if per_job else 1
