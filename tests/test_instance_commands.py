"""The commands a Dagster user types see one instance: `medmo materialize` (a partitioned and an
unpartitioned asset) writes it, `dagster dev -w workspace.yaml` started from the checkout root with no
DAGSTER_HOME finds those materializations through Dagster's GraphQL API, and `medmo ui` stopped with
SIGTERM (as a service manager stops it) leaves no process behind.

Real processes throughout; every process a test starts is stopped by its id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_recipe

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PARTITION = "synth_medqa"
SERVER_TIMEOUT_S = 180


def _env(home: Path, recipe: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DAGSTER_HOME", "MLFLOW_TRACKING_URI") and not k.startswith("MEDMO_PG_")}
    env.update(MEDMO_HOME=str(home), MEDMO_RECIPE=str(recipe), PYTHONPATH=str(ROOT))
    return env


@pytest.fixture(scope="module")
def materialized(tmp_path_factory):
    """`medmo materialize` on one corpus partition, then on the base model (unpartitioned)."""
    from tests.stage_inputs import inputs_recipe_data

    tmp = tmp_path_factory.mktemp("instance")
    home = tmp / "home"
    recipe = write_recipe(tmp / "inputs.yaml", inputs_recipe_data())
    env = _env(home, tmp / "absent.yaml")  # --recipe must win over MEDMO_RECIPE
    outputs = {}
    for args in (["corpus_shards", "--partition", PARTITION], ["base_model"]):
        done = subprocess.run([sys.executable, "-m", "medmo_pipeline.cli", "materialize", *args, "--recipe",
                               str(recipe)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        outputs[args[0]] = done.stdout
    return {"home": home, "recipe": recipe, "outputs": outputs, "tmp": tmp}


def test_materialize_a_partition_and_an_unpartitioned_asset(materialized):
    import dagster as dg

    home = materialized["home"]
    corpus, base = materialized["outputs"]["corpus_shards"], materialized["outputs"]["base_model"]
    # One line per job on the terminal, not the engine's event stream; the key outputs at the end.
    assert not [line for line in corpus.splitlines() if "STEP_START" in line], corpus
    assert "corpus_shards" in corpus and "done in" in corpus
    assert f"corpus_shards [{PARTITION}]: {home}" in corpus and "\n  rows " in corpus
    assert "base_model: " in base and "\n  parameters " in base
    assert all(len(line) < 100 for line in (corpus + base).splitlines()
               if not line.startswith("==") and str(home) not in line)  # paths are as long as they are
    # The whole event stream went to the log instead.
    assert "STEP_START" in (home / "logs" / f"medmo-corpus_shards__{PARTITION}_.log").read_text()
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        assert instance.get_materialized_partitions(dg.AssetKey("corpus_shards")) == {PARTITION}
        assert instance.get_latest_materialization_event(dg.AssetKey("base_model")) is not None
    finally:
        instance.dispose()


def test_materialize_names_a_missing_recipe(materialized, tmp_path):
    done = subprocess.run([sys.executable, "-m", "medmo_pipeline.cli", "materialize", "base_model", "--recipe",
                           str(tmp_path / "nope.yaml")], env=_env(materialized["home"], materialized["recipe"]),
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2 and "nope.yaml does not exist" in done.stderr


def _graphql(url: str, query: str) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.load(response)["data"]


def _wait_loaded(url: str, process: subprocess.Popen, log: Path) -> None:
    query = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-4000:]
        try:
            entries = _graphql(url, query)["workspaceOrError"]["locationEntries"]
            if any(e["loadStatus"] == "LOADED" for e in entries):
                return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"not loaded in {SERVER_TIMEOUT_S}s:\n{log.read_text()[-4000:]}")


def _materializations(url: str, key: str) -> list[dict]:
    query = (f'{{ assetOrError(assetKey: {{path: ["{key}"]}}) {{ ... on Asset {{ assetMaterializations(limit: 5) '
             '{ runId partition } } } }')
    return _graphql(url, query)["assetOrError"]["assetMaterializations"]


def _start(command: list[str], env: dict[str, str], log: Path, *, new_session: bool) -> subprocess.Popen:
    # Signals handled here are reset to their defaults in the child when it execs, whatever this process
    # inherited (a shell without job control starts background jobs with SIGINT ignored).
    saved = {sig: signal.signal(sig, signal.default_int_handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open(log, "wb") as handle:
            return subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=new_session)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _leftovers(home: Path) -> list[str]:
    from tests.test_ui_browser import processes_with_env

    return [p for value in {str(home), str(home.resolve())} for p in processes_with_env("MEDMO_HOME", value)]


def test_dagster_dev_from_the_checkout_root_opens_the_same_instance(materialized):
    import dagster as dg

    from medmo_pipeline.supervise import stop_session
    from tests.test_ui_browser import free_port

    home = materialized["home"]
    instance = dg.DagsterInstance.from_config(str(home / "dagster"))
    try:
        expected = instance.get_latest_materialization_event(dg.AssetKey("base_model")).run_id
    finally:
        instance.dispose()
    port, log = free_port(), materialized["tmp"] / "dagster-dev.log"
    url = f"http://127.0.0.1:{port}"
    before = set(ROOT.glob(".tmp_dagster_home_*"))
    # What a Dagster user types, from the checkout root, with no DAGSTER_HOME: only MEDMO_HOME says where.
    server = _start([str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml", "-p", str(port)],
                    _env(home, materialized["recipe"]), log, new_session=True)
    try:
        _wait_loaded(url, server, log)
        assert [m["runId"] for m in _materializations(url, "base_model")][:1] == [expected]
        assert {m["partition"] for m in _materializations(url, "corpus_shards")} == {PARTITION}
    finally:
        stop_session(server)
    assert _leftovers(home) == []
    assert set(ROOT.glob(".tmp_dagster_home_*")) == before  # dagster dev's throwaway home is gone again


def test_medmo_ui_stops_everything_on_sigterm(materialized):
    from medmo_pipeline.supervise import session_members, stop_session
    from tests.test_ui_browser import free_port

    home = materialized["home"]
    port, log = free_port(), materialized["tmp"] / "medmo-ui.log"
    url = f"http://127.0.0.1:{port}"
    ui = _start([sys.executable, "-m", "medmo_pipeline.cli", "ui", "--port", str(port)],
                _env(home, materialized["recipe"]), log, new_session=True)
    try:
        _wait_loaded(url, ui, log)
        assert _materializations(url, "base_model")  # the instance medmo materialized into
        assert len(_leftovers(home)) > 3  # medmo, dagster dev, its webserver, daemon, code server...
        os.kill(ui.pid, signal.SIGTERM)  # to medmo alone, as a service manager or `docker stop` sends it
        assert ui.wait(timeout=60) == 128 + signal.SIGTERM
        deadline = time.monotonic() + 10
        while _leftovers(home) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _leftovers(home) == [], log.read_text()[-3000:]
    finally:
        if ui.poll() is None or session_members(ui.pid):
            stop_session(ui)
