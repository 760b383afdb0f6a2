"""The training pool's slots follow the GPUs the profile declares (or this machine's, locally), set on a
real Dagster instance without a command; a limit a person wrote in dagster.yaml wins. Local jobs that
ask for GPUs lease distinct ones. (No GPU here: the machine's GPUs come from CUDA_VISIBLE_DEVICES.)"""

from __future__ import annotations

import threading

import dagster as dg
import pytest
import yaml

from medmo_pipeline.launch.gpus import GpuLease, visible_devices
from resources.pools import TRAINING_POOL, training_slots
from resources.profiles import EXAMPLES_DIR, ProfileError, launcher_from_profile
from tests.conftest import ROOT


def local_profile(tmp_path, training_gpus: int, gpus: int | None = None):
    data = {"launcher": "local", "settings": {"sizes": {"medmo_pipeline.training.sft": {"gpus_per_node": training_gpus}}}}
    if gpus is not None:
        data["gpus"] = gpus
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_slots_are_the_training_jobs_that_fit_the_gpus(tmp_path):
    assert training_slots({"MEDMO_PROFILE": str(EXAMPLES_DIR / "slurm.example.yaml")}) == 2  # 32 GPUs, jobs of 2 x 8
    assert training_slots({"MEDMO_PROFILE": str(EXAMPLES_DIR / "k8s.example.yaml")}) == 2  # 16 GPUs, pods of 8
    assert training_slots({"MEDMO_PROFILE": "slurm"}) == 1  # no GPUs declared
    profile = local_profile(tmp_path, training_gpus=2)
    assert training_slots({"MEDMO_PROFILE": profile, "CUDA_VISIBLE_DEVICES": "0,1,2,3,4"}) == 2  # detected
    assert training_slots({"MEDMO_PROFILE": profile, "CUDA_VISIBLE_DEVICES": ""}) == 1  # no GPU: still one
    assert training_slots({"MEDMO_PROFILE": local_profile(tmp_path, 2, gpus=8), "CUDA_VISIBLE_DEVICES": "0"}) == 4
    # A job that asks for no GPU sees all of them: one at a time.
    assert training_slots({"MEDMO_PROFILE": local_profile(tmp_path, 0), "CUDA_VISIBLE_DEVICES": "0,1,2,3"}) == 1
    (tmp_path / "bad.yaml").write_text("launcher: local\ngpus: many\n")
    with pytest.raises(ProfileError, match="'gpus' must be a whole number"):
        training_slots({"MEDMO_PROFILE": str(tmp_path / "bad.yaml")})


def instance_at(home, text: str) -> dg.DagsterInstance:
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text(text)
    return dg.DagsterInstance.from_config(str(home))


@dg.asset(pool=TRAINING_POOL)
def a_training_step() -> None:
    """Claims a slot of the training pool, as the stage assets do."""


def test_a_real_instance_gives_the_training_pool_the_profiles_slots(tmp_path, medmo_home, monkeypatch):
    monkeypatch.setenv("MEDMO_PROFILE", local_profile(tmp_path, training_gpus=1))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    with instance_at(tmp_path / "instance", (ROOT / "dagster.yaml").read_text()) as instance:
        assert instance.global_op_concurrency_default_limit == 3
        assert dg.materialize([a_training_step], instance=instance).success
        assert instance.event_log_storage.get_concurrency_info(TRAINING_POOL).slot_count == 3


def test_a_limit_written_in_the_instance_file_wins(tmp_path, medmo_home, monkeypatch):
    monkeypatch.setenv("MEDMO_PROFILE", local_profile(tmp_path, training_gpus=1))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    edited = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    edited["concurrency"]["pools"]["default_limit"] = 5
    with instance_at(tmp_path / "instance", yaml.safe_dump(edited)) as instance:
        assert dg.materialize([a_training_step], instance=instance).success
        assert instance.event_log_storage.get_concurrency_info(TRAINING_POOL).slot_count == 5


def test_a_broken_profile_leaves_one_slot_and_says_why(tmp_path, medmo_home, monkeypatch):
    monkeypatch.setenv("MEDMO_PROFILE", "k8s")  # the Kubernetes launcher needs an image
    with (instance_at(tmp_path / "instance", (ROOT / "dagster.yaml").read_text()) as instance,
          pytest.warns(UserWarning, match="(?s)profile could not be read: .*image")):
        assert instance.global_op_concurrency_default_limit == 1


def test_local_jobs_lease_distinct_gpus_and_wait_for_a_free_one(tmp_path):
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "2,3"}) == ["2", "3"]
    assert visible_devices({}, driver_dir=tmp_path / "no-driver") == []
    first, second = GpuLease(["2", "3"], 1, tmp_path), GpuLease(["2", "3"], 1, tmp_path)
    assert first.acquire() != second.acquire()
    third, got = GpuLease(["2", "3"], 1, tmp_path, poll_s=0.05), []
    waiter = threading.Thread(target=lambda: got.append(third.acquire()))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and not got  # both GPUs are leased: it waits
    second.release()
    waiter.join(5)
    assert len(got) == 1 and got[0][0] not in first.held
    with pytest.raises(ValueError, match="asks for 3 GPU"):
        GpuLease(["0", "1"], 3, tmp_path)


def test_the_local_launcher_takes_the_demos_warm_host_and_a_cluster_launcher_does_not():
    assert launcher_from_profile(env={"MEDMO_WARM_HOST": "/tmp/h.sock"}).warm_host == "/tmp/h.sock"
    assert launcher_from_profile(env={}).warm_host is None
    assert not hasattr(launcher_from_profile(env={"MEDMO_PROFILE": "slurm", "MEDMO_WARM_HOST": "/s"}), "warm_host")
