"""The Kubernetes launcher (``resources/k8s.py``) through dagster-k8s's real ``PipesK8sClient``.

No Kubernetes API server can run here, so ONLY the API boundary is replaced: ``kubernetes.client.CoreV1Api``
becomes ``FakeKubelet``, which records the pod body exactly as dagster-k8s sends it and plays the part of
the API server and kubelet for it: it resolves the pod's env (values, Secret references from its own Secret
store, ``$(VAR)`` expansion in command and args as Kubernetes does), runs the container's command on this
machine with that environment only, serves the container's log (stdout and stderr, timestamped) to
``read_namespaced_pod_log``, reports the container's state to ``list_namespaced_pod`` and kills the process
when the pod is deleted. Everything above it is real: kubeconfig loading, dagster-k8s's pod body, its
waiting and its Pipes message reader (messages over the pod log), the Dagster instance and the job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.conftest import small_recipe_data, write_recipe
from tests.stage_inputs import STAGE, STAGE_KEY, StageInputs, materialize_inputs, run_messages, stage_recipe

IMAGE = "registry.example.org/medmo-pipeline:test"
NAMESPACE = "medmo"
SECRETS = {("hub-credentials", "token"): "hf_not_a_real_token_0123456789"}
GPU_NODES = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


# --- the fake API server + kubelet ------------------------------------------------------------------


class FakePod:
    def __init__(self, namespace: str, body: dict, env: dict[str, str], command: list[str], cwd: Path):
        self.namespace, self.body, self.env, self.command = namespace, body, env, command
        self.lines: list[bytes] = []
        self.changed = threading.Condition()
        self.deleted = False
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        last = datetime.now(UTC)
        for raw in iter(self.process.stdout.readline, b""):
            stamp = max(datetime.now(UTC), last + timedelta(microseconds=1))  # unique, like the CRI's
            last = stamp
            with self.changed:
                self.lines.append(stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode() + b" " + raw.rstrip(b"\n") + b"\n")
                self.changed.notify_all()
        self.process.wait()
        with self.changed:
            self.changed.notify_all()

    def done(self) -> bool:
        return not self.reader.is_alive()

    def follow(self):
        sent = 0
        while True:
            with self.changed:
                while sent == len(self.lines) and not self.done():
                    self.changed.wait(timeout=0.5)
                chunk, sent = self.lines[sent:], len(self.lines)
            yield from chunk
            if self.done() and sent == len(self.lines):
                return

    def status(self):
        if self.done():
            state = SimpleNamespace(running=None, waiting=None, terminated=SimpleNamespace(
                exit_code=self.process.returncode, reason="Completed" if self.process.returncode == 0 else "Error",
                message=None))
        else:
            state = SimpleNamespace(running=SimpleNamespace(), waiting=None, terminated=None)
        container = self.body["spec"]["containers"][0]["name"]
        return SimpleNamespace(phase="Running", init_container_statuses=None,
                               container_statuses=[SimpleNamespace(name=container, ready=True, state=state)])


class FakeKubelet:
    """Stands in for ``kubernetes.client.CoreV1Api`` (see the module docstring)."""

    def __init__(self, workdir: Path, secrets: dict | None = None):
        self.workdir = workdir
        self.secrets = dict(SECRETS if secrets is None else secrets)
        self.pods: dict[str, FakePod] = {}

    def __call__(self, api_client=None):  # used as the CoreV1Api class
        return self

    def create_namespaced_pod(self, namespace, body):
        import kubernetes

        body = kubernetes.client.ApiClient().sanitize_for_serialization(body)  # what goes over the wire
        (container,) = body["spec"]["containers"]
        # What the image provides; HOME keeps this machine's caches (an image has its own baked in).
        env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(self.workdir))}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[(ref["name"], ref["key"])]  # missing: the pod would not start
        command = [expand(part, env) for part in [*container.get("command", []), *container.get("args", [])]]
        self.pods[body["metadata"]["name"]] = FakePod(namespace, body, env, command, self.workdir)

    def list_namespaced_pod(self, namespace, field_selector=None, **_):
        name = field_selector.removeprefix("metadata.name=")
        pod = self.pods.get(name)
        items = [] if pod is None or pod.deleted or pod.namespace != namespace else [
            SimpleNamespace(metadata=SimpleNamespace(name=name), status=pod.status())]
        return SimpleNamespace(items=items)

    def read_namespaced_pod_log(self, name, namespace, follow=False, **kwargs):
        pod = self.pods[name]
        if follow:
            return pod.follow()
        lines = pod.lines[-kwargs["tail_lines"]:] if kwargs.get("tail_lines") else pod.lines
        return SimpleNamespace(data=b"".join(lines))

    def delete_namespaced_pod(self, name, namespace, **_):
        pod = self.pods[name]
        pod.deleted = True
        if pod.process.poll() is None:
            os.killpg(pod.process.pid, signal.SIGKILL)  # the process group this kubelet started
        pod.reader.join(timeout=30)

    def only_pod(self) -> FakePod:
        (pod,) = self.pods.values()
        return pod


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command/args: defined names expand, $$ escapes a dollar."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


@pytest.fixture
def kubelet(tmp_path, monkeypatch) -> FakeKubelet:
    import kubernetes

    workdir = tmp_path / "pod-workdir"
    workdir.mkdir()
    fake = FakeKubelet(workdir)
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", fake)
    yield fake
    for pod in fake.pods.values():
        if pod.process.poll() is None:
            os.killpg(pod.process.pid, signal.SIGKILL)


def kubeconfig(path: Path) -> Path:
    """A kubeconfig naming an API server that is never reached (the API client is the fake)."""
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}],
    }))
    return path


def profile_file(path: Path, *, mount: Path, sizes: dict, **settings) -> Path:
    data = {"launcher": "k8s", "settings": {
        "image": IMAGE, "namespace": NAMESPACE, "kubeconfig_file": str(kubeconfig(path.with_suffix(".kubeconfig"))),
        "poll_interval_s": 0.2, "python": sys.executable,  # the image's python: this environment's
        "shared_volume_claim": "medmo-shared", "mount_path": str(mount), "shm_size": "1Gi",
        "node_selector": GPU_NODES, "tolerations": [GPU_TOLERATION],
        "secret_env": [{"env": "HF_TOKEN", "secret": "hub-credentials", "key": "token"}],
        "sizes": sizes, **settings}}
    path.write_text(yaml.safe_dump(data))
    return path


def env_by_name(container: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container["env"]}


# --- a training stage in a pod ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, warm_job_host) -> StageInputs:
    root = tmp_path_factory.mktemp("k8s-launcher")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDMO_HOME", str(root / "home"))
        for name in ("MLFLOW_TRACKING_URI", "MEDMO_RECIPE", "MEDMO_PROFILE"):
            mp.delenv(name, raising=False)
        # Its own, not the session's copy: the pod sees only the shared volume (this module's root).
        yield materialize_inputs(root, warm_job_host)  # with the local launcher: the profile is not set yet


@pytest.mark.e2e
@pytest.mark.slow
def test_training_stage_runs_in_a_pod_with_the_spec_it_asked_for(inputs: StageInputs, kubelet: FakeKubelet,
                                                                   tmp_path, monkeypatch):
    import dagster as dg
    import mlflow
    import torch
    from dagster_pipes import decode_env_var

    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe
    from medmo_pipeline.launch.k8s import JOB_LABEL
    from medmo_pipeline.model.loading import load_model
    from resources.k8s import K8sLauncher

    shared = inputs.home.parent  # the volume: MEDMO_HOME, the recipe and the MLflow store live on it
    mlflow_uri = f"sqlite:///{shared / 'cluster-mlflow.db'}"
    profile = profile_file(shared / "cluster.yaml", mount=shared, env={"MLFLOW_TRACKING_URI": mlflow_uri},
                           sizes={STAGE_KEY: {"gpus_per_node": 2, "cpus_per_task": 4, "mem": "16Gi"}})
    monkeypatch.setenv("MEDMO_PROFILE", str(profile))
    recipe_path = stage_recipe(shared, name="k8s-stage.yaml", max_steps=3, logging_steps=1)
    defs = build_definitions(load_recipe(recipe_path), recipe_path)
    assert isinstance(defs.resources["launcher"], K8sLauncher)  # chosen by MEDMO_PROFILE

    with dg.instance_for_test(temp_dir=str(inputs.dagster_dir)) as instance:
        result = dg.materialize(list(defs.assets), selection=[dg.AssetKey(STAGE_KEY)], resources=defs.resources,
                                instance=instance, raise_on_error=False)
        logged = run_messages(instance, result.run_id)
    pod = kubelet.only_pod()
    assert result.success, "\n".join([*logged[-30:], *(line.decode() for line in pod.lines[-30:])])

    # The pod as the API received it.
    assert pod.namespace == NAMESPACE and pod.deleted and pod.process.returncode == 0
    spec = pod.body["spec"]
    (container,) = spec["containers"]
    assert container["image"] == IMAGE and spec["restartPolicy"] == "Never"
    assert container["command"] == [sys.executable, "-m", "torch.distributed.run"]
    assert container["args"][:4] == ["--standalone", "--nproc_per_node=2", "-m", "medmo_pipeline.training.sft"]
    assert {k: str(v) for k, v in container["resources"]["limits"].items()} == {
        "cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}  # GPUs take limits only
    assert spec["nodeSelector"] == GPU_NODES and spec["tolerations"] == [GPU_TOLERATION]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["shared"]["persistentVolumeClaim"] == {"claimName": "medmo-shared"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"shared": str(shared), "dshm": "/dev/shm"}
    paths = [a for a in container["args"] if a.startswith("/")]
    assert len(paths) == 4 and all(Path(a).is_relative_to(shared) for a in paths)  # recipe, parent, corpus, output
    env = env_by_name(container)
    assert env["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": mlflow_uri}
    assert env["MEDMO_HOME"]["value"] == str(inputs.home) and env["HF_HUB_OFFLINE"]["value"] == "1"
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub-credentials",
                                                                                    "key": "token"}}}
    # Added by the Pipes client: the context, and messages written to stderr, read back from the pod log.
    assert decode_env_var(env["DAGSTER_PIPES_CONTEXT"]["value"])["data"]["run_id"] == result.run_id
    assert decode_env_var(env["DAGSTER_PIPES_MESSAGES"]["value"]) == {"stdio": "stderr"}
    assert SECRETS[("hub-credentials", "token")] not in json.dumps(pod.body)
    assert pod.env["HF_TOKEN"] == SECRETS[("hub-credentials", "token")]  # the kubelet resolved the reference
    labels = pod.body["metadata"]["labels"]
    assert DNS_LABEL.fullmatch(labels[JOB_LABEL]) and labels[JOB_LABEL].startswith("medmo-stage1-checkpoint-")

    # What came back over the pod log: rank 0's Pipes messages through torchrun.
    assert any(m.startswith(f"Kubernetes pod in {NAMESPACE}: medmo_pipeline.training.sft (2 process(es), 2 GPU(s))")
               for m in logged)
    assert any(STAGE in m and "samples planned per pass over" in m for m in logged)
    (materialization,) = result.asset_materializations_for_node(STAGE_KEY)
    meta = {key: value.value for key, value in materialization.metadata.items()}
    assert meta["k8s_namespace"] == NAMESPACE and meta["k8s_image"] == IMAGE and meta["steps"] == 3
    assert materialization.tags["dagster/data_version"]
    checkpoint = Path(meta["path"])
    lineage = json.loads((checkpoint / "lineage.json").read_text())
    assert lineage["resume"]["inputs"]["world_size"] == 2 and lineage["dagster_run_id"] == result.run_id
    weights = load_model(checkpoint).state_dict()
    assert weights and all(torch.isfinite(t).all() for t in weights.values())
    # The job logged to the MLflow store the pod was given, once (rank 0).
    client = mlflow.MlflowClient(tracking_uri=mlflow_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string=f"tags.dagster_run_id = '{result.run_id}'")
    assert [r.info.run_id for r in runs] == [lineage["mlflow_run_id"]]


# --- refusals and failures (no training) --------------------------------------------------------------


def materialize_base_model(tmp_path: Path, profile: Path, monkeypatch):
    import dagster as dg

    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe

    monkeypatch.setenv("MEDMO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MEDMO_PROFILE", str(profile))
    for name in ("MLFLOW_TRACKING_URI", "MEDMO_RECIPE"):
        monkeypatch.delenv(name, raising=False)
    recipe_path = write_recipe(tmp_path / "small.yaml", small_recipe_data())
    defs = build_definitions(load_recipe(recipe_path), recipe_path)
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        result = dg.materialize(list(defs.assets), selection=[dg.AssetKey("base_model")], resources=defs.resources,
                                instance=instance, raise_on_error=False)
        return result, "\n".join(run_messages(instance, result.run_id))


def test_a_multi_node_size_fails_with_a_clear_message_and_creates_no_pod(kubelet, tmp_path, monkeypatch):
    profile = profile_file(tmp_path / "p.yaml", mount=tmp_path, sizes={"base_model": {"nodes": 2, "gpus_per_node": 8}})

    result, logged = materialize_base_model(tmp_path, profile, monkeypatch)

    assert not result.success
    assert "medmo_pipeline.training.base_model asks for 2 nodes: the Pipes pod client runs one pod" in logged
    assert "medmo_pipeline.launch.k8s" in logged  # where the multi-node route is
    assert kubelet.pods == {}


def test_medmo_home_outside_the_shared_volume_is_refused(kubelet, tmp_path, monkeypatch):
    profile = profile_file(tmp_path / "p.yaml", mount=tmp_path / "elsewhere", sizes={})

    result, logged = materialize_base_model(tmp_path, profile, monkeypatch)

    assert not result.success
    assert f"MEDMO_HOME {tmp_path / 'home'} is not under the shared volume's mount_path {tmp_path / 'elsewhere'}" in logged
    assert kubelet.pods == {}


def test_a_failing_container_fails_the_run_and_its_pod_is_deleted(kubelet, tmp_path, monkeypatch):
    script = tmp_path / "broken-python"
    script.write_text("#!/bin/sh\necho 'no module here' >&2\nexit 3\n")
    script.chmod(0o755)
    profile = profile_file(tmp_path / "p.yaml", mount=tmp_path, sizes={}, python=str(script))

    result, logged = materialize_base_model(tmp_path, profile, monkeypatch)

    pod = kubelet.only_pod()
    assert not result.success and pod.deleted and pod.process.returncode == 3
    assert pod.body["spec"]["containers"][0]["command"] == [str(script), "-m", "medmo_pipeline.training.base_model"]
    assert "no module here" in logged and "failed" in logged


# --- profile selection and names ----------------------------------------------------------------------


def test_medmo_profile_file_builds_a_k8s_launcher(tmp_path):
    from resources.k8s import K8sLauncher, SecretRef
    from resources.profiles import launcher_from_profile

    profile = profile_file(tmp_path / "cluster.yaml", mount=tmp_path, sizes={
        "medmo_pipeline.training.sft": {"gpus_per_node": 8, "cpus_per_task": 96, "mem": "1000Gi"}})

    launcher = launcher_from_profile(offline=False, env={"MEDMO_PROFILE": str(profile)})

    assert type(launcher) is K8sLauncher
    assert (launcher.image, launcher.namespace, launcher.shared_volume_claim) == (IMAGE, NAMESPACE, "medmo-shared")
    assert launcher.secret_env == [SecretRef(env="HF_TOKEN", secret="hub-credentials", key="token")]
    sft = launcher.sizes["medmo_pipeline.training.sft"]
    assert (sft.gpus_per_node, sft.processes_per_node(), sft.mem) == (8, 8, "1000Gi")
    assert launcher.offline is False and launcher.tolerations == [GPU_TOLERATION]


def test_the_k8s_profile_without_a_file_names_the_missing_image():
    from resources.profiles import launcher_from_profile

    with pytest.raises(ValueError, match="image"):
        launcher_from_profile(env={"MEDMO_PROFILE": "k8s"})


@pytest.mark.parametrize("path", [
    ["stage1_checkpoint"],
    ["a_very_long_asset_name_for_a_checkpoint_of_a_stage_that_goes_on_and_on_and_on"],
    ["Team.Prefix", "Sub__Group", "stage_3-checkpoint--final"],
    ["___"],
])
def test_job_name_is_a_dns_label(path):
    import dagster as dg

    from medmo_pipeline.launch.k8s import K8sSpec, job_manifest
    from resources.k8s import job_name

    names = {job_name(SimpleNamespace(asset_key=dg.AssetKey(path), run_id=run_id))
             for run_id in ("0a1b2c3d-0000-4000-8000-000000000000", "ffeeddcc-0000-4000-8000-000000000000")}
    assert len(names) == 2  # the run is part of the name
    for name in names:
        assert len(name) <= 63 and DNS_LABEL.fullmatch(name) and "--" not in name and name.startswith("medmo-")
        job_manifest(K8sSpec(image=IMAGE), name, "m", [], nnodes=2)  # the spec builder's own check agrees


@pytest.mark.parametrize("name, kind", [("k8s.example.yaml", "K8sLauncher"), ("slurm.example.yaml", "SlurmLauncher")])
def test_example_profiles_build_their_launchers(name, kind):
    """The README's example profiles stay valid for the launchers' current fields."""
    from resources.profiles import EXAMPLES_DIR, launcher_from_profile

    launcher = launcher_from_profile(env={"MEDMO_PROFILE": str(EXAMPLES_DIR / name)})

    assert type(launcher).__name__ == kind
    assert launcher.sizes["medmo_pipeline.training.sft"].processes_per_node() == 8
