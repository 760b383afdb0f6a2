"""Disk full, I/O errors and concurrent writers for checkpoints and evaluation tables.

A failed write (an injected ``OSError``, ENOSPC as when the disk fills) must raise an error that
names the destination, leave nothing a reader could take for complete (the destination is absent,
or still the previous complete copy), and let the same write succeed once space is back. Two job
processes publishing the same directory at once must leave one writer's complete output, never a mix.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medmo_pipeline import atomic
from medmo_pipeline.atomic import staged_dir, staged_file, write_json_atomic, write_text_atomic
from medmo_pipeline.evaluation.run import TABLE_COLUMNS, publish_eval_table
from tests.conftest import ROOT


def disk_full(path: Path | str | None = None) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), None if path is None else str(path))


def leftovers(directory: Path, final: Path) -> list[str]:
    """Entries beside ``final`` other than itself and its lock: staged or moved-aside copies."""
    return sorted(p.name for p in directory.iterdir() if p.name not in (final.name, f".{final.name}.lock"))


def check_disk_full_error(info: pytest.ExceptionInfo, final: Path) -> None:
    assert info.value.errno == errno.ENOSPC
    assert str(final) in str(info.value)


# ---- the primitives -------------------------------------------------------------------------------


def test_staged_dir_disk_full_publishes_nothing_and_names_the_path(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(OSError) as info, staged_dir(final) as tmp:
        (tmp / "a.bin").write_bytes(b"x" * 1000)
        (tmp / "b.bin").write_bytes(b"half")
        raise disk_full(tmp / "b.bin")
    check_disk_full_error(info, final)
    assert not final.exists() and leftovers(tmp_path, final) == []
    with staged_dir(final) as tmp:  # space is back: the same write goes through
        (tmp / "a.bin").write_bytes(b"x" * 1000)
    assert [p.name for p in final.iterdir()] == ["a.bin"]


def test_staged_dir_disk_full_keeps_the_previous_output(tmp_path):
    final = tmp_path / "out"
    with staged_dir(final) as tmp:
        (tmp / "v.txt").write_text("first")
    with pytest.raises(OSError, match="No space left"), staged_dir(final) as tmp:
        (tmp / "v.txt").write_text("sec")
        raise disk_full()
    assert (final / "v.txt").read_text() == "first" and leftovers(tmp_path, final) == []


def test_failed_final_rename_puts_the_previous_output_back(tmp_path, monkeypatch):
    final = tmp_path / "out"
    with staged_dir(final) as tmp:
        (tmp / "v.txt").write_text("first")
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".tmp-") and Path(dst) == final:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError, match=str(final)), staged_dir(final) as tmp:
        (tmp / "v.txt").write_text("second")
    assert (final / "v.txt").read_text() == "first" and leftovers(tmp_path, final) == []


def test_errors_raised_by_code_pass_through_unchanged(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no weights"), staged_dir(final):
        raise FileNotFoundError("no weights")
    with pytest.raises(KeyError), staged_dir(final):
        raise KeyError("x")
    assert not final.exists() and leftovers(tmp_path, final) == []


def test_write_text_atomic_disk_full_at_flush_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "table.csv"
    write_text_atomic(path, "old\n")

    def fsync(fd):  # network filesystems often report a full disk only when data is flushed
        raise disk_full()

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        write_json_atomic(path, {"new": 1})
    check_disk_full_error(info, path)
    assert path.read_text() == "old\n" and leftovers(tmp_path, path) == []
    monkeypatch.undo()
    write_json_atomic(path, {"new": 1})
    assert json.loads(path.read_text()) == {"new": 1}


def test_staged_file_keeps_the_suffix_for_writers_that_read_it(tmp_path):
    with staged_file(tmp_path / "plot.png") as staged:
        assert staged.suffix == ".png" and staged.name.startswith(".tmp-")
        staged.write_bytes(b"png")
    assert (tmp_path / "plot.png").read_bytes() == b"png"


# ---- checkpoints ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    from medmo_pipeline.model.tiny import build_tiny_base_model

    texts = ["lesion <box>[[1, 2, 3, 4]]</box> yes no", "The lungs are clear."] * 50
    return build_tiny_base_model(tmp_path_factory.mktemp("tiny") / "base", texts=texts, spec={}, seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir):
    from medmo_pipeline.model.loading import load_model, load_processor

    return load_model(tiny_dir), load_processor(tiny_dir)


def publish(tiny, final: Path, **kwargs):
    from medmo_pipeline.model.checkpoint import publish_checkpoint

    model, processor = tiny
    return publish_checkpoint(model, processor, final, lineage={"stage": "stage1"}, recipe_section={"s": 1},
                              history=[{"step": 1, "loss": 1.0}], title="t", **kwargs)


def fail_writing_weights(monkeypatch, final):
    """safetensors runs out of space half way through the weights file."""
    from transformers import modeling_utils

    real = modeling_utils.safe_save_file

    def save_file(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise disk_full(filename)

    monkeypatch.setattr(modeling_utils, "safe_save_file", save_file)


def fail_writing_lineage(monkeypatch, final):
    """Everything written but the last file, lineage.json."""
    from medmo_pipeline.model import checkpoint

    real = checkpoint.write_json_atomic

    def write(path, data):
        if Path(path).name == "lineage.json":
            Path(path).write_text('{"stage": "sta')
            raise disk_full(path)
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_json_atomic", write)


def fail_renaming(monkeypatch, final):
    """The staged checkpoint is complete but cannot be renamed into place."""
    real = os.replace

    def replace(src, dst):
        if Path(src).name.startswith(".tmp-") and Path(dst) == final:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(dst))
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)


@pytest.mark.parametrize("fault", [fail_writing_weights, fail_writing_lineage, fail_renaming])
@pytest.mark.parametrize("previous", [False, True], ids=["fresh", "over-previous"])
def test_checkpoint_write_failure_then_retry(tiny, tmp_path, monkeypatch, fault, previous):
    from medmo_pipeline.model.checkpoint import weights_version
    from medmo_pipeline.model.loading import load_model

    final = tmp_path / "checkpoints" / "stage1" / "key"
    if previous:
        before, _ = publish(tiny, final)
    fault(monkeypatch, final)
    with pytest.raises(OSError) as info:
        publish(tiny, final)
    assert str(final) in str(info.value) and info.value.errno in (errno.ENOSPC, errno.EIO)
    assert leftovers(final.parent, final) == []
    if previous:  # the earlier complete checkpoint is still there, whole
        assert weights_version(final) == before
        assert json.loads((final / "lineage.json").read_text())["data_version"] == before
    else:
        assert not final.exists()

    monkeypatch.undo()  # space is back
    version, _ = publish(tiny, final)
    assert weights_version(final) == version == json.loads((final / "lineage.json").read_text())["data_version"]
    assert {"model.safetensors", "config.json", "recipe.yaml", "training_log.json", "lineage.json"} <= {
        p.name for p in final.iterdir()}
    assert leftovers(final.parent, final) == []
    assert sum(p.numel() for p in load_model(final).parameters()) > 0


def test_extra_files_are_written_before_the_checkpoint_is_visible(tiny, tmp_path):
    final = tmp_path / "rl"

    def extra(directory: Path):
        assert not final.exists() and directory != final
        (directory / "box_reward_trend.png").write_bytes(b"png")

    publish(tiny, final, extra=extra)
    assert (final / "box_reward_trend.png").read_bytes() == b"png"


# ---- evaluation tables ------------------------------------------------------------------------------


def eval_table(value: float) -> tuple[pd.DataFrame, list[dict]]:
    table = pd.DataFrame([{"checkpoint": "stage1", "benchmark": "synthetic_heldout", "metric": "mcq_accuracy",
                           "value": value, "n": 4, "ci_low": 0.0, "ci_high": 1.0, "unparseable": 0, "empty": 0}],
                         columns=TABLE_COLUMNS)
    predictions = [{"checkpoint": "stage1", "id": f"s:{i}", "prediction": "A", "score": value} for i in range(4)]
    return table, predictions


@pytest.mark.parametrize("failing", ["table.parquet", "predictions.parquet", "lineage.json"])
def test_eval_table_write_failure_then_retry(tmp_path, monkeypatch, failing):
    output = tmp_path / "eval" / "stage1" / "key"
    old_version = publish_eval_table(output, *eval_table(0.25), lineage={"run": "old"})
    real_to_parquet = pd.DataFrame.to_parquet
    real_write_json = atomic.write_json_atomic

    def to_parquet(frame, path, *args, **kwargs):
        real_to_parquet(frame, path, *args, **kwargs)
        if Path(path).name == failing:
            Path(path).write_bytes(Path(path).read_bytes()[:100])
            raise disk_full(path)

    def write_json(path, data):
        if Path(path).name == failing:
            raise disk_full(path)
        real_write_json(path, data)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)
    monkeypatch.setattr(atomic, "write_json_atomic", write_json)
    with pytest.raises(OSError) as info:
        publish_eval_table(output, *eval_table(0.75), lineage={"run": "new"})
    check_disk_full_error(info, output)
    assert pd.read_parquet(output / "table.parquet")["value"].tolist() == [0.25]
    assert json.loads((output / "lineage.json").read_text()) == {"run": "old", "data_version": old_version}
    assert leftovers(output.parent, output) == []

    monkeypatch.undo()
    version = publish_eval_table(output, *eval_table(0.75), lineage={"run": "new"})
    assert pd.read_parquet(output / "table.parquet")["value"].tolist() == [0.75]
    assert len(pd.read_parquet(output / "predictions.parquet")) == 4
    assert json.loads((output / "lineage.json").read_text()) == {"run": "new", "data_version": version}


def test_stage_ablation_plot_failure_keeps_the_previous_plot(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from medmo_pipeline.evaluation.ablation import build_stage_ablation

    eval_dirs = {}
    for name, value in [("base_model", 0.25), ("stage1", 0.5)]:
        eval_dirs[name] = tmp_path / "eval" / name
        publish_eval_table(eval_dirs[name], *eval_table(value), lineage={})
    reports = tmp_path / "reports"
    build_stage_ablation(eval_dirs, reports)
    plot = reports / "stage_ablation.png"
    before = {p.name: p.read_bytes() for p in reports.glob("*.png")}
    assert plot.name in before

    def savefig(self, path, *args, **kwargs):
        Path(path).write_bytes(b"\x89PNG half")
        raise disk_full(path)

    monkeypatch.setattr(Figure, "savefig", savefig)
    # Whichever plot is written first (ours, or the one beside the paper's reported rows) fails.
    with pytest.raises(OSError, match=re.escape(str(reports)) + r"/stage_ablation\w*\.png"):
        build_stage_ablation(eval_dirs, reports)
    assert {p.name: p.read_bytes() for p in reports.glob("*.png")} == before
    assert not [p.name for p in reports.iterdir() if p.name.startswith(".tmp-")]


# ---- two job processes publishing the same directory at once ------------------------------------------

# Both writers finish staging, then wait for each other before renaming into place: the worst case.
BARRIER = """
import sys, time
from pathlib import Path
from medmo_pipeline import atomic

def meet(barrier: Path, me: str) -> None:
    (barrier / me).touch()
    deadline = time.time() + 120
    while len(list(barrier.iterdir())) < WRITERS:
        if time.time() > deadline:
            sys.exit("the other writers never arrived")
        time.sleep(0.001)

real_fsync_tree = atomic._fsync_tree
def fsync_then_meet(root):
    real_fsync_tree(root)
    meet(BARRIER_DIR, WRITER)
atomic._fsync_tree = fsync_then_meet
"""

CHECKPOINT_WRITER = BARRIER + """
import json, torch
from medmo_pipeline.model.loading import load_model, load_processor
from medmo_pipeline.model.checkpoint import publish_checkpoint

base, final, WRITER, BARRIER_DIR, perturb = sys.argv[1], Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5]
WRITERS = 2
model, processor = load_model(base), load_processor(base)
if perturb == "1":
    with torch.no_grad():
        model.lm_head.weight.add_(float(WRITER))
version, _ = publish_checkpoint(model, processor, final, lineage={"writer": WRITER}, recipe_section={},
                                history=[{"step": 1, "loss": float(WRITER)}], title=WRITER)
print(json.dumps({"writer": WRITER, "data_version": version}))
"""

EVAL_WRITER = BARRIER + """
import json
import pandas as pd
from medmo_pipeline.evaluation.run import TABLE_COLUMNS, publish_eval_table

final, WRITER, BARRIER_DIR, WRITERS = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
table = pd.DataFrame([{"checkpoint": WRITER, "benchmark": "b", "metric": "m", "value": float(WRITER), "n": 1,
                       "ci_low": 0.0, "ci_high": 1.0, "unparseable": 0, "empty": 0}], columns=TABLE_COLUMNS)
predictions = [{"checkpoint": WRITER, "score": float(WRITER)}] * 50
version = publish_eval_table(final, table, predictions, lineage={"writer": WRITER})
print(json.dumps({"writer": WRITER, "data_version": version}))
"""


def run_writers(script: str, argvs: list[list[str]]) -> dict[str, str]:
    """Start every writer at once; each must succeed. Returns writer -> data version it published."""
    processes = [subprocess.Popen([sys.executable, "-c", script, *argv], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for argv in argvs]
    reported = {}
    for process in processes:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        answer = json.loads(out.strip().splitlines()[-1])
        reported[answer["writer"]] = answer["data_version"]
    return reported


@pytest.mark.parametrize("same_content", [True, False], ids=["same-content", "different-content"])
def test_two_jobs_publishing_one_checkpoint_never_mix(tiny_dir, tmp_path, same_content):
    from medmo_pipeline.model.checkpoint import weights_version

    final = tmp_path / "checkpoints" / "stage1" / "key"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    reported = run_writers(CHECKPOINT_WRITER, [[str(tiny_dir), str(final), writer, str(barrier),
                                                "0" if same_content else "1"] for writer in ("1", "2")])
    lineage = json.loads((final / "lineage.json").read_text())
    winner = lineage["writer"]
    assert json.loads((final / "training_log.json").read_text()) == [{"step": 1, "loss": float(winner)}]
    assert weights_version(final) == lineage["data_version"] == reported[winner]
    assert (reported["1"] == reported["2"]) is same_content
    assert leftovers(final.parent, final) == []


@pytest.mark.parametrize("writers", [2, 4])
def test_jobs_publishing_one_eval_table_never_mix(tmp_path, writers):
    final = tmp_path / "eval" / "stage1" / "key"
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    reported = run_writers(EVAL_WRITER, [[str(final), str(writer), str(barrier), str(writers)]
                                         for writer in range(1, writers + 1)])
    winner = json.loads((final / "lineage.json").read_text())["writer"]
    assert pd.read_parquet(final / "table.parquet")["checkpoint"].tolist() == [winner]
    assert set(pd.read_parquet(final / "predictions.parquet")["checkpoint"]) == {winner}
    assert json.loads((final / "lineage.json").read_text())["data_version"] == reported[winner]
    assert leftovers(final.parent, final) == []


LOCKED_WRITER = """
import sys
from pathlib import Path
from medmo_pipeline.atomic import staged_dir

final, ready = Path(sys.argv[1]), Path(sys.argv[2])
with staged_dir(final) as tmp:
    (tmp / "v.txt").write_text("complete")
    ready.touch()
"""


def test_the_rename_into_place_waits_for_the_publish_lock(tmp_path):
    import time

    final, ready = tmp_path / "out" / "key", tmp_path / "ready"
    final.parent.mkdir()
    with atomic.publish_lock(final):
        writer = subprocess.Popen([sys.executable, "-c", LOCKED_WRITER, str(final), str(ready)], cwd=ROOT)
        while not ready.exists() and writer.poll() is None:
            time.sleep(0.01)
        time.sleep(0.5)  # the writer has staged everything; without the lock it would rename now
        assert writer.poll() is None and not final.exists()
    assert writer.wait(timeout=60) == 0
    assert (final / "v.txt").read_text() == "complete" and leftovers(final.parent, final) == []
