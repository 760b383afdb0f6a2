"""Why a job failed reaches Dagster, whichever rank failed; and the ranks of a job leave together.

Real parts: a Dagster instance, the local launcher, torchrun with 2 processes on gloo, and the jobs
in ``tests/rank_jobs.py`` (decorated with ``jobs.entry_point`` like every job of the pipeline).
"""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from medmo_pipeline.jobs import ERROR_FILE_ENV, entry_point
from medmo_pipeline.launch.local import recorded_failure
from resources.launcher import JobSize, Launcher
from resources.local import LocalLauncher
from tests.rank_jobs import LINES

JOB = "tests.rank_jobs"


def launch_asset(mode: str, out, nproc: int):
    """Materializes one asset whose job is ``python -m tests.rank_jobs MODE OUT`` on ``nproc`` processes."""

    @dg.asset
    def job(context: dg.AssetExecutionContext, launcher: Launcher):
        return launcher.launch(context, JOB, [mode, str(out)])

    launcher = LocalLauncher(sizes={"job": JobSize(nproc_per_node=nproc)})
    with dg.instance_for_test() as instance:
        result = dg.materialize([job], resources={"launcher": launcher}, instance=instance, raise_on_error=False)
        failures = [e for e in result.all_events if e.is_step_failure]
        return result, [e.step_failure_data.user_failure_data for e in failures]


def job_failure(mode: str, out, nproc: int):
    """The one step failure of a job that must fail, as Dagster reports it (never a bare Pipes error)."""
    result, failures = launch_asset(mode, out, nproc)
    assert not result.success
    (failure,) = failures
    assert failure is not None, "a bare Pipes error: why the job failed did not reach Dagster"
    return failure


@pytest.mark.parametrize("nproc", [1, 2])
def test_the_failure_names_the_exception_of_the_rank_that_raised(medmo_home, tmp_path, nproc):
    failure = job_failure("fail-on-last-rank", tmp_path, nproc)

    assert failure.description == f"{JOB} failed: RuntimeError: rank {nproc - 1} of {nproc} cannot read its shard"
    traceback = failure.metadata["traceback"].value
    assert "rank_jobs.py" in traceback and traceback.rstrip().endswith("cannot read its shard")


@pytest.mark.parametrize("nproc", [1, 2])
def test_a_rank_killed_by_a_signal_is_named_with_its_python_traceback(medmo_home, tmp_path, nproc):
    failure = job_failure("abort-on-last-rank", tmp_path, nproc)

    assert failure.description == f"{JOB} failed: rank {nproc - 1}: Fatal Python error: Aborted"
    assert 'rank_jobs.py", line' in failure.metadata["traceback"].value


def test_ranks_leave_only_once_every_rank_is_done(medmo_home, tmp_path):
    result, _ = launch_asset("leave", tmp_path, 2)

    assert result.success
    done_0 = float((tmp_path / "done-0").read_text())
    assert float((tmp_path / "done-1").read_text()) < done_0 - 1.0  # rank 1 finished its work first...
    assert float((tmp_path / "exit-1").read_text()) >= done_0  # ...and still waited for rank 0


def test_a_rank_that_would_abort_in_the_interpreters_teardown_does_not_fail_a_finished_job(medmo_home, tmp_path):
    result, failures = launch_asset("teardown-aborts", tmp_path, 2)

    assert {p.name for p in tmp_path.iterdir()} == {"done-0", "done-1"}
    assert result.success, failures


def test_entry_point_records_an_exception_and_reraises_it(tmp_path, monkeypatch):
    error_file = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(error_file))

    @entry_point
    def main() -> None:
        raise KeyError("missing column 'image'")

    with pytest.raises(KeyError):
        main()
    message, traceback = recorded_failure(error_file)
    assert message == "KeyError: \"missing column 'image'\""
    assert "in main" in traceback


def test_entry_point_records_nothing_when_the_job_succeeds(tmp_path, monkeypatch):
    error_file = tmp_path / "error.json"
    monkeypatch.setenv(ERROR_FILE_ENV, str(error_file))

    entry_point(lambda: None)()
    assert not error_file.exists()
    assert recorded_failure(error_file) is None


def test_recorded_failure_reads_torchruns_signal_record_and_ignores_garbage(tmp_path):
    signalled = tmp_path / "signal.json"
    signalled.write_text(json.dumps({"message": "Signal 6 (SIGABRT) received by PID 42"}))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")

    assert recorded_failure(signalled) == ("Signal 6 (SIGABRT) received by PID 42", "")
    assert recorded_failure(garbage) is None


def test_ranks_sharing_one_stderr_never_split_a_pipes_message(tmp_path):
    """Rank 0's Pipes messages and another rank's console lines, written at once to one pipe (the
    pod's log Kubernetes reads messages from), each arrive whole on lines of their own. Unbuffered,
    as launchers run jobs, a line's text and its newline were two writes, and lines spliced."""
    read_end, write_end = os.pipe()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    writers = [subprocess.Popen([sys.executable, "-m", JOB, mode, str(tmp_path)], stderr=write_end, env=env)
               for mode in ("pipes-lines", "console-lines")]
    os.close(write_end)
    with os.fdopen(read_end, encoding="utf-8") as pipe:
        lines = pipe.read().splitlines()
    assert [writer.wait(timeout=60) for writer in writers] == [0, 0]
    messages = [json.loads(line)["params"]["message"] for line in lines if line.startswith("{")]
    console = [line for line in lines if line.startswith("[medmo] ")]
    assert len(messages) + len(console) == len(lines), [line for line in lines if line[:1] not in "{["][:3]
    assert messages == [f"message {index} " + "x" * 200 for index in range(LINES)]
    assert console == [f"[medmo] line {index} of another rank" for index in range(LINES)]
