"""The ``launcher`` resource: runs a job in its own process and hears back through Dagster Pipes."""

from __future__ import annotations

import dagster as dg

from medmo_pipeline import home
from medmo_pipeline.launch.local import current_env, job_command, job_env


class LocalLauncher(dg.ConfigurableResource):
    """Pipes subprocess on this machine (``nproc_per_node > 1`` runs the job under torchrun)."""

    nproc_per_node: int = 1
    offline: bool = True

    def launch(self, context: dg.AssetExecutionContext, module: str, args: list[str]) -> dg.MaterializeResult:
        asset_key = context.asset_key.to_user_string()
        command = job_command(module, args, nproc_per_node=self.nproc_per_node)
        context.log.info("launching: " + " ".join(command))
        client = dg.PipesSubprocessClient(
            env=job_env(current_env(), run_id=context.run_id, asset_key=asset_key, offline=self.offline),
            cwd=str(home.checkout_root()),
        )
        return client.run(command=command, context=context).get_materialize_result()
