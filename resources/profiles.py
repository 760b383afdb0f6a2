"""Which launcher runs the jobs: a profile, chosen by ``MEDMO_PROFILE`` or by the Dagster deployment.

``MEDMO_PROFILE`` is ``local`` (the default), ``slurm`` or ``k8s`` (that launcher with its defaults), or
the path of a profile YAML file::

    launcher: slurm            # local | slurm | k8s
    gpus: 32                   # GPUs training may use at once: sizes the training pool (resources.pools)
    settings:                  # the launcher's fields (resources/launcher.py, local.py, slurm.py, k8s.py)
      partition: gpu
      size: {cpus_per_task: 8, time: "04:00:00"}
      sizes:
        medmo_pipeline.training.sft: {nodes: 2, gpus_per_node: 8, cpus_per_task: 96, mem: "0"}

With ``MEDMO_PROFILE`` unset, a Dagster deployment name (``DAGSTER_CLOUD_DEPLOYMENT_NAME`` on Dagster+,
or ``DAGSTER_DEPLOYMENT`` where you set it yourself) picks ``<MEDMO_PROFILES_DIR>/<deployment>.yaml``
when that file exists. Examples: ``resources/profiles/*.example.yaml``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from medmo_pipeline.launch.warm_host import SOCKET_ENV as WARM_HOST_ENV
from resources.k8s import K8sLauncher
from resources.launcher import Launcher
from resources.local import LocalLauncher
from resources.slurm import SlurmLauncher

PROFILE_ENV = "MEDMO_PROFILE"
PROFILES_DIR_ENV = "MEDMO_PROFILES_DIR"
DEPLOYMENT_ENVS = ("DAGSTER_CLOUD_DEPLOYMENT_NAME", "DAGSTER_DEPLOYMENT")
LAUNCHERS: dict[str, type[Launcher]] = {"local": LocalLauncher, "slurm": SlurmLauncher, "k8s": K8sLauncher}
KINDS = tuple(LAUNCHERS)
EXAMPLES_DIR = Path(__file__).parent / "profiles"


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file or variable."""


def selected_profile(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"launcher": kind, "gpus": N or None, "settings": {...}}`` for the active profile."""
    env = os.environ if env is None else env
    value = env.get(PROFILE_ENV, "").strip()
    if value:
        return load_profile(value)
    for name in DEPLOYMENT_ENVS:
        deployment = env.get(name, "").strip()
        path = Path(env.get(PROFILES_DIR_ENV) or EXAMPLES_DIR) / f"{deployment}.yaml"
        if deployment and path.is_file():
            return load_profile(str(path))
    return {"launcher": "local", "gpus": None, "settings": {}}


def load_profile(value: str) -> dict[str, Any]:
    """A launcher kind with its defaults, or a profile YAML file."""
    if value in KINDS:
        return {"launcher": value, "gpus": None, "settings": {}}
    path = Path(value).expanduser()
    if path.suffix not in (".yaml", ".yml"):
        raise ProfileError(f"{PROFILE_ENV}={value!r}: expected one of {list(KINDS)} or a profile .yaml file")
    if not path.is_file():
        raise ProfileError(f"profile file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or data.get("launcher") not in KINDS:
        raise ProfileError(f"{path}: 'launcher' must be one of {list(KINDS)}")
    unknown = set(data) - {"launcher", "gpus", "settings", "description"}
    if unknown:
        raise ProfileError(f"{path}: unknown keys {sorted(unknown)} (expected launcher, gpus, settings)")
    gpus = data.get("gpus")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 0):
        raise ProfileError(f"{path}: 'gpus' must be a whole number of GPUs (got {gpus!r})")
    return {"launcher": data["launcher"], "gpus": gpus, "settings": dict(data.get("settings") or {})}


def launcher_from_profile(*, offline: bool = True, env: Mapping[str, str] | None = None) -> Launcher:
    """Build the profile's launcher; ``offline`` (from the recipe) applies unless the profile sets it."""
    profile = selected_profile(env)
    env = os.environ if env is None else env
    settings = {"offline": offline, **profile["settings"]}
    if profile["launcher"] == "local" and env.get(WARM_HOST_ENV):
        settings.setdefault("warm_host", env[WARM_HOST_ENV])  # `medmo demo`'s warm job host
    return LAUNCHERS[profile["launcher"]](**settings)
