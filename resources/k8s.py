"""The Kubernetes launcher: dagster-k8s's Pipes client running the pod of a Job built by a pure function.

``medmo_pipeline.launch.k8s.job_manifest`` builds the batch/v1 Job (image, GPU limits, shared volume,
MLflow and run environment, node selector, tolerations, secrets by reference); its pod template goes to
``PipesK8sClient``, which adds the Pipes environment, creates the pod, reads Pipes messages from its
log, and deletes the pod when the job ends or the Dagster run is cancelled.

The pod sees the pipeline's files through ``shared_volume_claim`` (a ReadWriteMany volume) mounted at
``mount_path``. A job's arguments are absolute paths under MEDMO_HOME as the Dagster process sees it
(parent checkpoint, corpus index, output), so the pod must see MEDMO_HOME at the same path: run Dagster
where the same volume is mounted at the same path, with MEDMO_HOME under ``mount_path`` (checked).

One pod per job: a size with ``nodes > 1`` is refused (Pipes' pod client runs a single pod); the Indexed
Job and rendezvous Service in ``medmo_pipeline.launch.k8s`` are the multi-node route.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import dagster as dg
from pydantic import Field

from medmo_pipeline.launch.k8s import K8sSpec, job_manifest
from resources.launcher import JobSize, Launcher, with_metadata


class SecretRef(dg.Config):
    """An environment variable filled from a Kubernetes Secret (the value never passes through here)."""

    env: str
    secret: str
    key: str


class K8sLauncher(Launcher):
    image: str
    namespace: str = "default"
    shared_volume_claim: str | None = None
    mount_path: str = "/data"
    service_account: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)  # MLFLOW_TRACKING_URI and other non-secret settings
    secret_env: list[SecretRef] = Field(default_factory=list)
    python: str = "python"
    shm_size: str | None = "64Gi"
    load_incluster_config: bool | None = None
    kubeconfig_file: str | None = None
    kube_context: str | None = None
    poll_interval_s: float = 10.0

    def launch(self, context: dg.AssetExecutionContext, module: str, args: list[str]) -> dg.MaterializeResult:
        from dagster_k8s import PipesK8sClient

        size = self.size_for(context, module)
        if size.nodes != 1:
            raise dg.Failure(
                f"{module} asks for {size.nodes} nodes: the Pipes pod client runs one pod. Size it to one node "
                "here, or run the Indexed Job and Service from medmo_pipeline.launch.k8s (README: Running on a "
                "cluster)."
            )
        spec = self.spec(size, context)
        manifest = job_manifest(spec, job_name(context), module, args, nproc_per_node=size.processes_per_node())
        template = manifest["spec"]["template"]
        client = PipesK8sClient(load_incluster_config=self.load_incluster_config, kubeconfig_file=self.kubeconfig_file,
                                kube_context=self.kube_context, poll_interval=self.poll_interval_s)
        context.log.info(f"Kubernetes pod in {spec.namespace}: {module} ({size.processes_per_node()} process(es), "
                         f"{size.gpus_per_node} GPU(s)) on {spec.image}")
        result = client.run(context=context, namespace=spec.namespace, base_pod_meta=template["metadata"],
                            base_pod_spec=template["spec"]).get_materialize_result()
        return with_metadata(result, k8s_namespace=spec.namespace, k8s_image=spec.image)

    def spec(self, size: JobSize, context: dg.AssetExecutionContext) -> K8sSpec:
        # The profile's env first: MEDMO_HOME and the run identity are the Dagster process's own.
        env = self.job_environment(context, dict(self.env))
        home = PurePosixPath(env["MEDMO_HOME"])
        if self.shared_volume_claim and not home.is_relative_to(self.mount_path):
            raise dg.Failure(
                f"MEDMO_HOME {home} is not under the shared volume's mount_path {self.mount_path}: the pod "
                "would not see the files its arguments name. Set MEDMO_HOME under the mount (the same path "
                "where Dagster runs) or mount_path to a directory above it."
            )
        return K8sSpec(
            image=self.image, namespace=self.namespace, gpus=size.gpus_per_node, cpu=str(size.cpus_per_task),
            memory=size.mem, node_selector=self.node_selector, tolerations=self.tolerations,
            shared_volume_claim=self.shared_volume_claim, mount_path=self.mount_path,
            service_account=self.service_account, env=env,
            secret_env=[(ref.env, ref.secret, ref.key) for ref in self.secret_env], python=self.python,
            shm_size=self.shm_size,
        )


def job_name(context: dg.AssetExecutionContext) -> str:
    """A DNS label (<= 63 characters) naming the asset and the run: the Job's label and, multi-node, its
    pods' subdomain."""
    asset = re.sub(r"[^a-z0-9]+", "-", "-".join(context.asset_key.path).lower()).strip("-")
    asset = asset[:44].rstrip("-")
    return f"medmo-{asset}-{context.run_id[:8]}" if asset else f"medmo-{context.run_id[:8]}"
