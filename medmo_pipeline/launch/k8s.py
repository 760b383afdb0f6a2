"""Launch specs for Kubernetes: a batch/v1 Job manifest for a job, as a plain dict (pure functions).

The dict goes to dagster-k8s's Pipes client (which adds its own Pipes environment) or through
``yaml.safe_dump`` to ``kubectl apply``; nothing here talks to a cluster.

Secrets only ever appear as references (``valueFrom.secretKeyRef``); a literal env value under a
secret-looking name is refused.

Multi-node (``nnodes > 1``): an Indexed Job with ``completions = parallelism = nnodes``. Each pod's
hostname is ``<name>-<index>``, and with ``subdomain: <name>`` plus the headless Service from
``rendezvous_service_manifest`` (same name, same namespace, created before the Job) pod 0 is
reachable at ``<name>-0.<name>``. torchrun's static rendezvous meets there: pod 0 hosts the store
and every pod's node rank is its completion index (``JOB_COMPLETION_INDEX``), so no pod has to
guess whether it is the host. The Service publishes pods before they are ready, so the name
resolves while the ranks are starting. Delete the Service with the Job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from medmo_pipeline.tracking import looks_secret

JOB_LABEL = "medmo-pipeline/job"
CONTAINER_NAME = "job"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True, kw_only=True)
class K8sSpec:
    """Where and how big a Kubernetes job is."""

    image: str
    namespace: str = "default"
    gpus: int = 0  # per pod (per node)
    cpu: str | None = None  # e.g. "32"
    memory: str | None = None  # e.g. "256Gi"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    shared_volume_claim: str | None = None  # a ReadWriteMany PVC holding MEDMO_HOME
    mount_path: str = "/data"
    service_account: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # MLFLOW_TRACKING_URI, MEDMO_HOME, ...
    secret_env: Sequence[tuple[str, str, str]] = ()  # (env name, Secret name, key in the Secret)
    backoff_limit: int = 0  # a failed training job is resumed by re-materializing, not by retries
    ttl_seconds_after_finished: int | None = 7 * 24 * 3600
    python: str = "python"
    rdzv_port: int = 29500
    shm_size: str | None = "64Gi"  # /dev/shm for data loader workers and NCCL; None keeps the 64M default


def job_manifest(spec: K8sSpec, name: str, module: str, args: Sequence[str], *,
                 nproc_per_node: int = 1, nnodes: int = 1) -> dict[str, Any]:
    """The batch/v1 Job that runs ``python -m module args`` (under torchrun when distributed)."""
    _check_name(name)
    if nproc_per_node < 1 or nnodes < 1:
        raise ValueError("nproc_per_node and nnodes must be >= 1")
    labels = {"app.kubernetes.io/name": "medmo-pipeline", JOB_LABEL: name}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        **_command(spec, name, module, list(args), nproc_per_node=nproc_per_node, nnodes=nnodes),
        "env": _env(spec, indexed=nnodes > 1),
    }
    resources = _resources(spec)
    if resources:
        container["resources"] = resources
    mounts, volumes = _volumes(spec)
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if volumes:
        pod_spec["volumes"] = volumes
    if spec.service_account:
        pod_spec["serviceAccountName"] = spec.service_account
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    job_spec: dict[str, Any] = {"backoffLimit": spec.backoff_limit}
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
    if nnodes > 1:
        job_spec |= {"completionMode": "Indexed", "completions": nnodes, "parallelism": nnodes}
        pod_spec["subdomain"] = name  # with the headless Service: <name>-<index>.<name> resolves
    job_spec["template"] = {"metadata": {"labels": dict(labels)}, "spec": pod_spec}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": labels},
        "spec": job_spec,
    }


def rendezvous_service_manifest(spec: K8sSpec, name: str) -> dict[str, Any]:
    """Headless Service that gives a multi-node Job's pods DNS names (create it before the Job)."""
    _check_name(name)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": {"app.kubernetes.io/name": "medmo-pipeline"}},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,  # ranks look each other up before any pod is ready
            "selector": {JOB_LABEL: name},
            "ports": [{"name": "rendezvous", "port": spec.rdzv_port}],
        },
    }


def _check_name(name: str) -> None:
    # Pod hostnames <name>-<index> must be DNS labels, so keep the Job name one too.
    if len(name) > 63 or not _DNS_LABEL.fullmatch(name):
        raise ValueError(f"{name!r} is not a valid Kubernetes name (lower-case letters, digits, '-'; <= 63)")


def _literal(arg: str) -> str:
    # Kubernetes expands $(VAR) in command and args; $$( keeps a job argument exactly as given.
    return arg.replace("$(", "$$(")


def _command(spec: K8sSpec, name: str, module: str, args: list[str], *, nproc_per_node: int,
             nnodes: int) -> dict[str, list[str]]:
    module, args = _literal(module), [_literal(a) for a in args]
    if nproc_per_node == 1 and nnodes == 1:
        return {"command": [spec.python, "-m", module], "args": args}
    if nnodes == 1:
        rendezvous = ["--standalone"]
    else:  # Kubernetes expands $(JOB_COMPLETION_INDEX) from the container's env
        rendezvous = [f"--nnodes={nnodes}", "--node_rank=$(JOB_COMPLETION_INDEX)",
                      f"--master_addr={name}-0.{name}", f"--master_port={spec.rdzv_port}"]
    return {
        "command": [spec.python, "-m", "torch.distributed.run"],
        "args": [*rendezvous, f"--nproc_per_node={nproc_per_node}", "-m", module, *args],
    }


def _env(spec: K8sSpec, *, indexed: bool) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if indexed:  # the Job controller sets it too; naming it here makes $(...) expansion certain
        env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}})
    for name in sorted(spec.env):
        if looks_secret(name, spec.env[name]):
            raise ValueError(f"{name} looks secret: pass it through secret_env (a Secret reference), not env")
        env.append({"name": name, "value": str(spec.env[name])})
    for env_name, secret_name, secret_key in spec.secret_env:
        env.append({"name": env_name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": secret_key}}})
    return env


def _resources(spec: K8sSpec) -> dict[str, dict[str, Any]]:
    limits: dict[str, Any] = {}
    if spec.cpu is not None:
        limits["cpu"] = spec.cpu
    if spec.memory is not None:
        limits["memory"] = spec.memory
    requests = dict(limits)  # requests = limits: the scheduler reserves what the job may use
    if spec.gpus:
        limits["nvidia.com/gpu"] = spec.gpus  # extended resources take limits only
    resources = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    return resources


def _volumes(spec: K8sSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    mounts, volumes = [], []
    if spec.shared_volume_claim:
        mounts.append({"name": "shared", "mountPath": spec.mount_path})
        volumes.append({"name": "shared", "persistentVolumeClaim": {"claimName": spec.shared_volume_claim}})
    if spec.shm_size:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": spec.shm_size}})
    return mounts, volumes
