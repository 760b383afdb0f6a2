"""The Dagster UI in a real browser: `medmo ui` (dagster dev, with its daemon and the QueuedRunCoordinator
from dagster.yaml) on 127.0.0.1, driven through Debian's chromium with Playwright.

The test opens the training group's lineage and finds every asset of the group, launches
stage1_checkpoint by clicking "Materialize" (its inputs are materialized beforehand into the same
instance, for speed), waits on the run page for "Success", and reads the checkpoint's lineage
metadata and its training-curve image on the asset page, then the stage-ablation asset's page (the real
asset, run on stand-in evaluation tables) and its plot, rendered as an image. Screenshots of each step are kept in
``test-artifacts/ui/`` (gitignored; replaced on every run). Every process it started is stopped, and
it checks that none is left.

Needs the ``chromium`` Debian package (``scripts/install-system-deps.sh``) and the ``playwright``
Python package (the ``dev`` extra); never ``playwright install``. Without them the test skips and says
which is missing.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, write_recipe

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
LOCATION = "assets"  # workspace.yaml loads the python module `assets`: the location takes its name
TRAINING_ASSETS = ["base_model", "stage1_checkpoint", "stage2_checkpoint", "stage3_checkpoint", "rl_policy"]
STAGE, STAGE_KEY = "stage1", "stage1_checkpoint"
SERVER_TIMEOUT_S = 240
RUN_TIMEOUT_S = 600
UI_TIMEOUT_MS = 60_000


def missing_requirements() -> list[str]:
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (Debian package chromium; run scripts/install-system-deps.sh)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (pip install -e '.[dev]')")
    return missing


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def materialize_inputs(recipe_path: Path, dagster_home: Path) -> None:
    """What stage1 reads, in the instance the UI serves: its corpus partitions, its mixture, the base model."""
    import dagster as dg

    from assets.definitions import build_definitions
    from medmo_pipeline.config import load_recipe

    recipe = load_recipe(recipe_path)
    defs = build_definitions(recipe, recipe_path)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        for source in sorted(recipe.stages[STAGE].mixture.sources):
            assert dg.materialize(list(defs.assets), selection=[dg.AssetKey("corpus_shards")], partition_key=source,
                                  resources=defs.resources, instance=instance).success
        assert dg.materialize(list(defs.assets), selection=[dg.AssetKey(f"{STAGE}_mixture"), dg.AssetKey("base_model")],
                              resources=defs.resources, instance=instance).success
    finally:
        instance.dispose()


def materialize_ablation(recipe_path: Path, dagster_home: Path, tables: Path) -> None:
    """The real stage_ablation asset, run on small stand-in evaluation tables (real Parquet in the
    evaluation format, one per checkpoint and benchmark), so that its page has plots without training."""
    import dagster as dg

    from assets.definitions import build_definitions
    from assets.evaluation import benchmark_partitions
    from assets.keys import eval_key
    from medmo_pipeline.config import load_recipe
    from tests.test_regression_guard import _table

    recipe = load_recipe(recipe_path)
    ablation = next(a for a in build_definitions(recipe, recipe_path).assets
                    if isinstance(a, dg.AssetsDefinition) and dg.AssetKey("stage_ablation") in a.keys)

    def stand_in(name: str, rank: int):
        @dg.asset(key=eval_key(name), partitions_def=benchmark_partitions(recipe))
        def _table_asset(context):  # no annotation: this module's annotations are strings, dg is local
            directory = tables / name / context.partition_key
            directory.mkdir(parents=True, exist_ok=True)
            _table({"grounding_mean_iou": 0.1 * rank, "closed_vqa_accuracy": 0.5 + 0.05 * rank}).to_parquet(
                directory / "table.parquet", index=False)
            return dg.MaterializeResult(metadata={"path": dg.MetadataValue.path(str(directory))})

        return _table_asset

    stand_ins = [stand_in(name, rank) for rank, name in enumerate(recipe.checkpoints())]
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        for benchmark in recipe.evaluation.benchmarks:
            assert dg.materialize(stand_ins, partition_key=benchmark, instance=instance).success
        assert dg.materialize([*stand_ins, ablation], selection=[dg.AssetKey("stage_ablation")],
                              instance=instance).success
    finally:
        instance.dispose()


def start_ui(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen:
    # A shell without job control starts background jobs with SIGINT ignored, a child inherits an ignored
    # signal, and dagster dev maps SIGTERM to SIGINT's handler: so the server would ignore both. A handled
    # signal is reset to its default on exec, so handle them here while the child starts.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with open(log_path, "wb") as log:
            # Its own session: dagster dev starts a webserver, a daemon, code servers and run workers; the
            # whole group is stopped at the end.
            return subprocess.Popen([sys.executable, "-m", "medmo_pipeline.cli", "ui", "--port", str(port)],
                                    cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def wait_until_loaded(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Until the code location has loaded (GraphQL says LOADED), or the server died, or the timeout."""
    query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"})
    deadline = time.monotonic() + SERVER_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"medmo ui exited with {process.returncode}:\n{_tail(log_path)}")
        try:
            request = urllib.request.Request(f"{url}/graphql", data=query.encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=10) as response:
                entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
            if any(e["name"] == LOCATION and e["loadStatus"] == "LOADED" for e in entries):
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"the UI did not load location {LOCATION!r} within {SERVER_TIMEOUT_S}s:\n"
                               f"{_tail(log_path)}")
        time.sleep(1)


def stop_group(process: subprocess.Popen) -> None:
    """SIGINT (dagster dev's Ctrl-C shutdown), then SIGTERM, then SIGKILL, to the whole process group."""
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if not _session_members(process.pid):
            break  # the leader's exit is not enough: its children must be gone too
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _proc_entries():
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            yield entry


def _session_members(sid: int) -> list[int]:
    found = []
    for entry in _proc_entries():
        try:
            # Fields after the parenthesised command: state ppid pgrp session ...
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def processes_with_env(name: str, value: str) -> list[str]:
    """Live processes whose environment has ``name=value`` (everything the UI started inherits it)."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in _proc_entries():
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    found.append(f"{entry.name}: {command[:200]}")
        except OSError:
            continue
    return found


def _tail(path: Path, chars: int = 6000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def test_materialize_a_checkpoint_from_the_ui(tmp_path, monkeypatch, warm_job_host):
    missing = missing_requirements()
    if missing:
        pytest.skip(f"browser test needs {' and '.join(missing)}")
    from playwright.sync_api import expect, sync_playwright

    from medmo_pipeline import cli
    from medmo_pipeline.launch.warm_host import SOCKET_ENV
    from tests.stage_inputs import inputs_recipe_data

    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    home = tmp_path / "home"
    recipe_path = write_recipe(tmp_path / "ui.yaml", inputs_recipe_data())
    monkeypatch.setenv("MEDMO_HOME", str(home))
    monkeypatch.setenv("MEDMO_RECIPE", str(recipe_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in [n for n in os.environ if n.startswith("MEDMO_PG_")]:
        monkeypatch.delenv(name)  # this test is about the default (sqlite) instance
    env = cli.dagster_environment()  # writes $MEDMO_HOME/dagster/dagster.yaml, as `medmo ui` does
    dagster_home = Path(env["DAGSTER_HOME"])
    # The inputs' jobs start as forks of the warm job host; the UI (env above) starts its job as `medmo ui` does.
    monkeypatch.setenv(SOCKET_ENV, warm_job_host)
    materialize_inputs(recipe_path, dagster_home)
    materialize_ablation(recipe_path, dagster_home, tmp_path / "stand-in-eval")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "dagster-dev.log"
    print(f"\nscreenshots: {ARTIFACTS}\ndagster dev log: {log_path}")
    server = start_ui(env, port, log_path)
    page = None
    try:
        wait_until_loaded(url, server, log_path)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                page.set_default_timeout(UI_TIMEOUT_MS)
                expect.set_options(timeout=UI_TIMEOUT_MS)
                # The UI's first-visit "Join the Dagster community" modal may come up over any page.
                page.add_locator_handler(page.get_by_text("Join the Dagster community"),
                                         lambda _: page.get_by_role("button", name="Skip").click())
                run_id = drive_ui(page, url, expect)
                check_asset_page(page, url, expect, home)
                check_ablation_page(page, url, expect, home)
            except BaseException:
                if page is not None:
                    page.screenshot(path=str(ARTIFACTS / "failure.png"), animations="disabled")
                raise
            finally:
                browser.close()
    except BaseException as exc:
        raise AssertionError(f"{exc}\n--- dagster dev log (tail)\n{_tail(log_path)}") from exc
    finally:
        stop_group(server)

    # The click went through the run queue (QueuedRunCoordinator, dequeued by the daemon), not a direct launch.
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        types = [e.dagster_event.event_type for e in instance.all_logs(run_id) if e.dagster_event]
        assert dg.DagsterEventType.RUN_ENQUEUED in types and dg.DagsterEventType.RUN_SUCCESS in types
        assert instance.get_run_by_id(run_id).asset_selection == {dg.AssetKey(STAGE_KEY)}
    finally:
        instance.dispose()

    assert _session_members(server.pid) == []
    for value in {str(home), str(home.resolve())}:
        assert processes_with_env("MEDMO_HOME", value) == []
    shots = sorted(p.name for p in ARTIFACTS.glob("*.png"))
    assert shots == ["01-training-lineage.png", "02-materialize-launched.png", "03-run-success.png",
                     "04-checkpoint-lineage-metadata.png", "05-training-curves.png", "06-stage-ablation.png"], shots


def dismiss_welcome(page) -> None:
    """A new instance greets the first visit from 127.0.0.1 with a modal, a second after the page loads;
    "Skip" records it as seen in the instance. Left open, it would swallow a later click."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.get_by_role("button", name="Skip").click(timeout=20_000)
    except PlaywrightTimeout:
        pass  # not shown (seen already); the locator handler still catches a late one


def drive_ui(page, url: str, expect) -> str:
    """Lineage of the training group, then Materialize on stage1_checkpoint; returns the run id."""
    from assets.definitions import default_definitions

    graph = default_definitions().resolve_asset_graph()
    group = sorted(k.to_user_string() for k in graph.get_all_asset_keys()
                   if graph.get(k).group_name == "training")
    assert group == sorted(TRAINING_ASSETS)

    page.goto(f"{url}/locations/{LOCATION}/asset-groups/training/lineage")
    dismiss_welcome(page)
    for name in TRAINING_ASSETS:
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    # animations="disabled" everywhere: dialogs fade in, and a screenshot would catch them half drawn.
    page.screenshot(path=str(ARTIFACTS / "01-training-lineage.png"), animations="disabled")

    page.goto(f"{url}/assets/{STAGE_KEY}")
    page.locator("button").filter(has_text=re.compile(r"^\s*Materialize\s*$")).click()
    # base_model_eval_table (a dependency that orders the stages, not an input) is not materialized here,
    # so the UI asks to confirm; the launch toast comes straight away otherwise.
    confirm = page.get_by_role("button", name="Confirm")
    launched = page.get_by_text(re.compile(r"Launched run [0-9a-f]{8}"))
    expect(confirm.or_(launched)).to_be_visible()
    if confirm.is_visible():
        expect(page.get_by_role("dialog").get_by_text("base_model_eval_table")).to_be_visible()
        confirm.click()
    expect(launched).to_be_visible()
    link = page.locator("a[href*='/runs/']").filter(has_text="View")
    href = link.get_attribute("href")
    match = re.search(r"/runs/([0-9a-f-]{36})", href or "")
    assert match, href
    page.screenshot(path=str(ARTIFACTS / "02-materialize-launched.png"), animations="disabled")

    run_id = match.group(1)
    page.goto(f"{url}/runs/{run_id}")
    outcome = page.get_by_text(re.compile(r"^(Success|Failure|Canceled)$"))
    expect(outcome.first).to_be_visible(timeout=RUN_TIMEOUT_S * 1000)
    final = outcome.first.inner_text().strip()
    page.screenshot(path=str(ARTIFACTS / "03-run-success.png"), animations="disabled")
    assert final == "Success", f"run {run_id} ended {final}"
    # The job's progress lines (steps done / total, ETA) are in the run's event log.
    expect(page.get_by_text(re.compile(r"step \d+/\d+ \(\d+%\) eta \d+s")).first).to_be_visible()
    return run_id


def check_asset_page(page, url: str, expect, home: Path) -> None:
    """The checkpoint's page shows its lineage (what lineage.json says) and its training curves."""
    [lineage_file] = (home / "checkpoints" / STAGE).glob("*/lineage.json")
    lineage = json.loads(lineage_file.read_text())

    page.goto(f"{url}/assets/{STAGE_KEY}")

    def row(key: str):
        return page.locator("tr").filter(has=page.get_by_text(key, exact=True))

    expected = {"corpus_data_version": lineage["corpus"]["data_version"],
                "parent_checkpoint": str(lineage["parent"]["path"]),
                "parent_data_version": lineage["parent"]["data_version"],
                "mlflow_run_id": lineage["mlflow_run_id"],
                "recipe_hash": lineage["recipe"]["hash"]}
    for key, value in expected.items():
        assert value, (key, lineage)
        expect(row(key)).to_contain_text(value)
    row("corpus_data_version").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "04-checkpoint-lineage-metadata.png"), animations="disabled")

    plot_row = row("training_curves_plot")
    plot_row.scroll_into_view_if_needed()
    plot_row.get_by_text("[Show Markdown]").click()
    image = page.get_by_role("img", name="training curves")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
    shown = base64.b64decode(image.get_attribute("src").split("base64,", 1)[1])
    assert shown == (lineage_file.parent / "training_curves.png").read_bytes()
    page.screenshot(path=str(ARTIFACTS / "05-training-curves.png"), animations="disabled")


def check_ablation_page(page, url: str, expect, home: Path) -> None:
    """The stage-ablation asset's page shows its plot as a picture (the PNG under reports/), not a path."""
    page.goto(f"{url}/assets/stage_ablation")
    plot_row = page.locator("tr").filter(has=page.get_by_text("plot_image", exact=True))
    plot_row.scroll_into_view_if_needed()
    plot_row.get_by_text("[Show Markdown]").click()
    image = page.get_by_role("img", name="stage ablation")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
    shown = base64.b64decode(image.get_attribute("src").split("base64,", 1)[1])
    assert shown == (home / "reports" / "stage_ablation.png").read_bytes()
    page.screenshot(path=str(ARTIFACTS / "06-stage-ablation.png"), animations="disabled")
