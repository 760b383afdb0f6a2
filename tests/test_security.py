"""Hostile input, secrets and servers: paths that try to leave their root, pickle checkpoints, remote
code, recipes that try to run code, credentials outside the environment, servers on public ports.

The end-to-end scan for leaked secrets (logs, event log, metadata, MLflow, files under MEDMO_HOME)
lives in ``test_end_to_end.py``, on the graph that test already materializes.
"""

from __future__ import annotations

import ast
import json
import pickle
import re
from pathlib import Path

import pytest
import yaml

from medmo_pipeline.config import RECIPES_DIR, BaseModelRecipe, RecipeError, load_recipe
from medmo_pipeline.data.adapters import iter_outcomes, iter_samples
from medmo_pipeline.data.outcomes import RowQuarantined
from medmo_pipeline.safe_paths import UnsafePathError, safe_glob
from tests.conftest import ROOT

LIBRARY = ROOT / "medmo_pipeline"


class RunsCode:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


# ---- paths from registries and data files -------------------------------------------------------------


@pytest.fixture
def mirror(tmp_path) -> Path:
    """A dataset root with one image inside, and an image, a report and boxes just outside it."""
    from fixtures_formats import png_bytes

    outside = tmp_path / "outside"
    (outside / "imgs" / "case").mkdir(parents=True)
    (outside / "secret.png").write_bytes(png_bytes())
    (outside / "s1.txt").write_text("FINDINGS: stolen. IMPRESSION: stolen.")
    (outside / "imgs" / "case" / "detection.json").write_text(json.dumps([{"lesion": [0, 0, 4, 4]}]))
    root = tmp_path / "root"
    (root / "imgs" / "ok").mkdir(parents=True)
    (root / "imgs" / "ok" / "a.png").write_bytes(png_bytes())
    return root


@pytest.mark.parametrize(("family", "options"), [
    ("image_folder", {"pattern": "../outside/*"}),
    ("image_folder", {"pattern": "/etc/*"}),
    ("report", {"layout": "study_folders", "reports_glob": "../outside/s*.txt"}),
    ("box_json_per_image", {"boxes_file": "../../outside/imgs/case/detection.json"}),
])
def test_registry_glob_patterns_cannot_leave_the_dataset_root(mirror, family, options):
    with pytest.raises(UnsafePathError):
        list(iter_samples(family, mirror, options))


def test_a_symlink_out_of_the_dataset_root_is_refused(mirror):
    """The linked file is never read: its record is quarantined as unsafe_path, the rest is read."""
    (mirror / "imgs" / "ok" / "b.png").symlink_to(mirror.parent / "outside" / "secret.png")
    outcomes = list(iter_outcomes("image_folder", mirror, {"image_dir": "imgs"}))
    assert [o.reason for o in outcomes if isinstance(o, RowQuarantined)] == ["unsafe_path"]
    assert "outside the dataset root" in outcomes[1].detail
    assert [row["images"][0]["path"] for row in outcomes if type(row) is dict] == ["imgs/ok/a.png"]


def test_safe_glob_keeps_matches_inside_the_root(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.txt").write_text("x")
    (tmp_path / "a" / "inside").symlink_to(tmp_path / "a" / "b")
    assert [p.relative_to(tmp_path / "a").as_posix() for p in safe_glob(tmp_path / "a", "*/x.txt")] == [
        "b/x.txt", "inside/x.txt"]
    for bad in ("", "b/../../*", "..\\*", "C:\\*"):
        with pytest.raises(UnsafePathError):
            safe_glob(tmp_path / "a", bad)


def test_recipe_deepspeed_config_must_be_a_shipped_file(tmp_path):
    from medmo_pipeline.training.trainer_setup import deepspeed_config

    assert deepspeed_config("zero3.json") == (RECIPES_DIR / "deepspeed" / "zero3.json").resolve()
    (RECIPES_DIR / "deepspeed").resolve()
    for bad in ("../paper.yaml", "/etc/passwd", "../../config.py"):
        with pytest.raises(UnsafePathError):
            deepspeed_config(bad)
    with pytest.raises(FileNotFoundError, match="not in"):
        deepspeed_config("zero9.json")


# ---- recipes cannot run code ------------------------------------------------------------------------------


@pytest.mark.parametrize("tagged", [
    "!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path ['{marker}']]",
    "!!python/object/new:pathlib.Path ['{marker}']",
    "!!python/name:os.system",
    "!!python/module:os",
])
def test_recipe_yaml_tags_construct_nothing(tmp_path, tagged):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: {tagged.format(marker=marker)}\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["os.system", "medmo_pipeline.rewards.box:box_reward", "__import__"])
def test_recipe_rewards_are_registry_names_not_import_paths(name):
    from medmo_pipeline.rewards import build_reward_functions

    with pytest.raises(ValueError, match="unknown reward"):
        build_reward_functions({name: {}})


# ---- pickle checkpoints and remote code ----------------------------------------------------------------------


def safetensors_checkpoint(directory: Path) -> Path:
    """A directory that looks like a safetensors checkpoint to the pickle check (never really loaded)."""
    import numpy as np
    from safetensors.numpy import save_file

    directory.mkdir(parents=True)
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text("{}")
    return directory


@pytest.fixture
def captured_from_pretrained(monkeypatch) -> list[dict]:
    import transformers

    calls: list[dict] = []

    def from_pretrained(path, **kwargs):
        calls.append(kwargs)
        info = {"missing_keys": set(), "unexpected_keys": set(), "mismatched_keys": set(), "error_msgs": []}
        return ("model", info) if kwargs.get("output_loading_info") else "model"

    monkeypatch.setattr(transformers.AutoModelForImageTextToText, "from_pretrained", from_pretrained)
    return calls


@pytest.mark.parametrize("name", ["training_args.bin", "optimizer.pt", "extra/rng_state.pth", "pytorch_model.bin"])
def test_a_checkpoint_holding_any_pickle_file_is_refused(tmp_path, captured_from_pretrained, name):
    from medmo_pipeline.model.loading import UnsafeCheckpointError, load_model

    checkpoint = safetensors_checkpoint(tmp_path / "ckpt")
    marker = tmp_path / "ran"
    (checkpoint / name).parent.mkdir(exist_ok=True)
    (checkpoint / name).write_bytes(pickle.dumps(RunsCode(marker)))
    with pytest.raises(UnsafeCheckpointError, match=re.escape(name)):
        load_model(checkpoint)
    assert captured_from_pretrained == [] and not marker.exists()
    assert load_model(checkpoint, allow_pickle=True) == "model"  # the recipe's explicit opt-in
    assert captured_from_pretrained[-1]["use_safetensors"] is None


def test_loading_defaults_to_safetensors_and_no_remote_code(tmp_path, captured_from_pretrained):
    from medmo_pipeline.model.loading import load_model

    load_model(safetensors_checkpoint(tmp_path / "ckpt"))
    assert captured_from_pretrained == [{"trust_remote_code": False, "local_files_only": True,
                                         "use_safetensors": True, "output_loading_info": True,
                                         "ignore_mismatched_sizes": True}]


@pytest.mark.parametrize("name", ["embedded", "paper"])
def test_shipped_recipes_keep_pickle_and_remote_code_off(name):
    base = BaseModelRecipe.model_validate(yaml.safe_load((RECIPES_DIR / f"{name}.yaml").read_text())["base_model"])
    assert (base.trust_remote_code, base.allow_pickle) == (False, False)
    assert BaseModelRecipe(source="tiny").trust_remote_code is False
    assert BaseModelRecipe(source="tiny").allow_pickle is False


def _calls(tree: ast.AST, function: str) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == function]


@pytest.mark.parametrize("module", ["training/sft.py", "training/grpo.py"])
def test_training_jobs_load_only_through_the_recipe_checked_loader(module):
    # The training jobs load through training.trainer_setup.load_for_training (ZeRO-3 needs the trainer
    # config first); the flags are checked there, in the test below.
    tree = ast.parse((LIBRARY / module).read_text())
    assert _calls(tree, "load_for_training"), f"{module} no longer loads through load_for_training"
    assert not _calls(tree, "load_model"), f"{module} calls load_model directly"


@pytest.mark.parametrize("module", ["training/trainer_setup.py", "evaluation/run.py"])
def test_jobs_take_pickle_and_remote_code_flags_from_the_recipe(module):
    tree = ast.parse((LIBRARY / module).read_text())
    calls = _calls(tree, "load_model")
    assert calls, f"{module} no longer loads a model through load_model"
    for call in calls:
        flags = {k.arg: ast.unparse(k.value) for k in call.keywords}
        assert flags.get("trust_remote_code", "").endswith(".trust_remote_code"), flags
        assert flags.get("allow_pickle", "").endswith(".allow_pickle"), flags


def test_no_code_hardwires_remote_code_pickle_or_unsafe_torch_load():
    offending = []
    for path in [*LIBRARY.rglob("*.py"), *(ROOT / "assets").rglob("*.py"), *(ROOT / "resources").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant) and (
                    (node.arg in ("trust_remote_code", "allow_pickle") and node.value.value is True)
                    or (node.arg == "weights_only" and node.value.value is False)):
                offending.append(f"{path.relative_to(ROOT)}:{node.value.lineno} {node.arg}={node.value.value}")
    assert offending == []


def test_sembscore_refuses_a_checkpoint_that_carries_code(tmp_path):
    torch = pytest.importorskip("torch")
    from medmo_pipeline.evaluation.metrics import sembscore

    marker = tmp_path / "ran"
    torch.save({"model_state_dict": RunsCode(marker)}, tmp_path / "chexbert.pth")
    with pytest.raises(pickle.UnpicklingError):
        sembscore(["a"], ["a"], checkpoint=tmp_path / "chexbert.pth", bert_dir=tmp_path)
    assert not marker.exists()


# ---- secrets come from the environment only ----------------------------------------------------------------


# Configuration keys that would hold a credential (``join_key`` or ``max_new_tokens`` do not).
CREDENTIAL_KEY = re.compile(r"(password|passwd|secret|token|api_?key|access_?key|credential)s?$", re.IGNORECASE)


def _secret_literals(data, where: str = "") -> list[str]:
    """Places where a credential key holds a literal string (``{env: NAME}`` is the allowed form)."""
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{where}.{key}"
            if CREDENTIAL_KEY.search(str(key)) and isinstance(value, str) and value:
                found.append(here)
            found += _secret_literals(value, here)
    elif isinstance(data, list):
        for i, item in enumerate(data):
            found += _secret_literals(item, f"{where}[{i}]")
    return found


def test_shipped_configuration_holds_no_secret_values():
    files = [*RECIPES_DIR.glob("*.yaml"), ROOT / "dagster.yaml", ROOT / "workspace.yaml"]
    found = {str(p.relative_to(ROOT)): _secret_literals(yaml.safe_load(p.read_text())) for p in files}
    assert {k: v for k, v in found.items() if v} == {}
    assert _secret_literals({"storage": {"postgres": {"password": "hunter2"}}}) == [".storage.postgres.password"]
    assert _secret_literals({"storage": {"postgres": {"password": {"env": "MEDMO_PG_PASSWORD"}}}}) == []


def test_registry_credentials_are_environment_variable_names():
    from medmo_pipeline.data.registry import load_registry

    for entry in load_registry().datasets:
        for name in entry.credentials.env if entry.credentials else []:
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), (entry.name, name)


# ---- servers -----------------------------------------------------------------------------------------------


def test_medmo_ui_serves_on_loopback_by_default(medmo_home, monkeypatch):
    from medmo_pipeline import cli

    commands = []
    from medmo_pipeline import supervise

    monkeypatch.setattr(supervise, "run_supervised", lambda command, **kwargs: commands.append(command) or 0)
    assert cli.main(["ui"]) == 0
    command = commands[0]
    assert command[1] == "dev" and command[command.index("-h") + 1] == "127.0.0.1"


def test_documented_server_commands_bind_loopback():
    text = (ROOT / "README.md").read_text() + (ROOT / "Makefile").read_text()
    servers = [line for line in text.splitlines()
               if re.search(r"\b(mlflow (ui|server)|dagster(-webserver| dev))\b", line) and "`" not in line]
    assert servers, "no server command found in README.md or Makefile"
    for line in servers:
        assert "127.0.0.1" in line, line
    assert "0.0.0.0" not in text


def test_readme_says_how_to_put_authentication_in_front():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Security"):]
    section = section[: section.index("\n## ", 1)]
    for needed in ("127.0.0.1", "reverse proxy", "auth_basic", "proxy_pass http://127.0.0.1:3000", "mlflow",
                   "environment", "safetensors", "allow_pickle", "trust_remote_code"):
        assert needed.lower() in section.lower(), needed


def test_a_bounded_read_refuses_what_is_not_a_regular_file_and_leaves_no_descriptor_open(tmp_path):
    import os

    from medmo_pipeline.safe_paths import read_bounded

    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    open_before = len(os.listdir("/proc/self/fd"))
    for name in ("folder", "pipe") * 5:
        with pytest.raises(OSError, match=f"{name} is not a regular file"):
            read_bounded(tmp_path / name, 1 << 20)
    assert len(os.listdir("/proc/self/fd")) == open_before
