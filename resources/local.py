"""The local launcher: each job is a Dagster Pipes subprocess on this machine (under torchrun when it has
several processes per node)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import dagster as dg

from medmo_pipeline import home
from medmo_pipeline.jobs import ERROR_FILE_ENV, FATAL_DIR_ENV
from medmo_pipeline.launch.gpus import GpuLease, visible_devices
from medmo_pipeline.launch.local import current_env, fatal_signal, job_command, recorded_failure
from resources.launcher import Launcher
from resources.pipes_messages import WholeLineTempFileMessageReader


class LocalLauncher(Launcher):
    """Pipes subprocess on this machine; a job with several processes per node runs under torchrun."""

    # The socket of a warm job host (medmo_pipeline.launch.warm_host): single-process jobs start as its
    # forks. `medmo demo` starts one and passes its socket in MEDMO_WARM_HOST (resources.profiles).
    warm_host: str | None = None

    def launch(self, context: dg.AssetExecutionContext, module: str, args: list[str]) -> dg.MaterializeResult:
        size = self.size_for(context, module)
        if size.nodes != 1:
            raise dg.Failure(f"the local launcher runs on one node; {module} asks for {size.nodes}")
        env = self.job_environment(context, current_env())
        command = job_command(module, args, nproc_per_node=size.processes_per_node(), warm_host=self.warm_host)
        with gpu_lease(size.gpus_per_node, env) as devices, tempfile.TemporaryDirectory(prefix="medmo-job-") as scratch:
            if devices is not None:  # its own GPUs: the training pool may run several jobs side by side
                env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
            context.log.info("launching: " + " ".join(command) + (f" on GPUs {env['CUDA_VISIBLE_DEVICES']}"
                                                                    if devices is not None else ""))
            error_file = Path(scratch) / "error.json"
            client = dg.PipesSubprocessClient(env={**env, ERROR_FILE_ENV: str(error_file), FATAL_DIR_ENV: scratch},
                                              cwd=str(home.checkout_root()),
                                              message_reader=WholeLineTempFileMessageReader())
            try:
                return client.run(command=command, context=context).get_materialize_result()
            except Exception as error:
                failure = job_failure(module, error_file, Path(scratch))
                if failure is None:
                    raise
                raise failure from error


def gpu_lease(count: int, env: dict[str, str]):
    """A lease on ``count`` of the GPUs the job would see (None when it asks for none: it sees them all)."""
    if count <= 0:
        return contextlib.nullcontext(None)
    try:
        return GpuLease(visible_devices(env), count, home.medmo_home() / "gpu-leases")
    except ValueError as error:  # more GPUs than the machine has
        raise dg.Failure(str(error)) from None


def job_failure(module: str, error_file: Path, fatal_dir: Path) -> dg.Failure | None:
    """A Failure that says why the job failed, from the exception it recorded (on whichever rank), or
    else from the tracebacks its fault handler wrote when a fatal signal killed a rank."""
    recorded = recorded_failure(error_file) or fatal_signal(fatal_dir)
    if recorded is None:
        return None
    message, traceback = recorded
    return dg.Failure(description=f"{module} failed: {message}",
                      metadata={"traceback": dg.MetadataValue.text(traceback)} if traceback else None)
