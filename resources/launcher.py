"""The ``launcher`` resource: runs a job in its own process(es) and hears back through Dagster Pipes.

One interface (``Launcher``: the type every asset declares for its ``launcher`` parameter), three
implementations, picked by the profile (``resources.profiles``):

- ``LocalLauncher`` (``resources.local``): a Pipes subprocess on this machine (torchrun when a job has
  several processes);
- ``SlurmLauncher`` (``resources.slurm``): an sbatch job, Pipes messages through the shared filesystem;
- ``K8sLauncher`` (``resources.k8s``): dagster-k8s's Pipes client with a Job's pod spec.

Every launcher sizes each job from ``size`` (the default) and ``sizes`` (overrides by asset key or job
module), so a profile can give the training stages 2 nodes x 8 GPUs and curation a few CPUs.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from medmo_pipeline.launch.local import job_env


class JobSize(dg.Config):
    """How big one job is. ``nproc_per_node`` None: one process per GPU (at least one)."""

    nodes: int = 1
    nproc_per_node: int | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 1  # Slurm: CPUs for each node's task; Kubernetes: the pod's CPU request and limit
    mem: str | None = None  # per node: Slurm "--mem" ("0": all of it), Kubernetes memory ("64Gi")
    time: str = "1-00:00:00"  # Slurm only: the job's time limit

    def processes_per_node(self) -> int:
        return self.nproc_per_node if self.nproc_per_node is not None else max(self.gpus_per_node, 1)


class Launcher(dg.ConfigurableResource):
    """Runs ``python -m module args`` for an asset and returns what the job reported over Pipes.

    The interface of every launcher; an implementation defines ``launch``."""

    offline: bool = True  # the embedded default must never reach for a hub
    size: JobSize = JobSize()
    sizes: dict[str, JobSize] = Field(default_factory=dict)  # asset key ("stage2_checkpoint") or job module -> size

    def launch(self, context: dg.AssetExecutionContext, module: str, args: list[str]) -> dg.MaterializeResult:
        raise NotImplementedError

    def size_for(self, context: dg.AssetExecutionContext, module: str) -> JobSize:
        asset = context.asset_key.to_user_string()
        return self.sizes.get(asset) or self.sizes.get(module) or self.size

    def job_environment(self, context: dg.AssetExecutionContext, base: dict[str, str] | None = None
                        ) -> dict[str, str]:
        """MEDMO_HOME, run identity, MLflow and offline flags on top of ``base``."""
        return job_env(base or {}, run_id=context.run_id, asset_key=context.asset_key.to_user_string(),
                       offline=self.offline)


def with_metadata(result: dg.MaterializeResult, **metadata) -> dg.MaterializeResult:
    """``result`` with launcher metadata (a Slurm job id, a pod name) added to what the job reported."""
    return dg.MaterializeResult(asset_key=result.asset_key, metadata={**(result.metadata or {}), **metadata},
                                check_results=result.check_results, data_version=result.data_version,
                                tags=result.tags)
