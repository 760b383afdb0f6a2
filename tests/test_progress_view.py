"""`medmo_pipeline.progress`: the Dagster CLI's event stream becomes one line per job."""

import io

from medmo_pipeline.progress import ProgressView
from medmo_pipeline.summary import headline_table

RUN = "2026-12-05 18:53:22 +0000 - dagster - {level} - __ASSET_JOB - 682699e5-cb87-47c2-bbb0-d81c0cb9303e - {rest}\n"


def _lines(view, *rests, level="DEBUG"):
    for rest in rests:
        view.feed(RUN.format(level=level, rest=rest))


def test_one_line_per_job_on_a_terminal_and_everything_in_the_log():
    log, out = io.StringIO(), io.StringIO()
    view = ProgressView(log, out, tty=True)
    _lines(view, '8885 - stage1_checkpoint - STEP_START - Started execution of step "stage1_checkpoint".')
    _lines(view, "stage1_checkpoint - step 2/6 (33%) eta 4s", "stage1_checkpoint - step 4/6 (66%) eta 2s",
           level="INFO")
    _lines(view, '8885 - stage1_checkpoint - STEP_SUCCESS - Finished execution of step "stage1_checkpoint" in 5s.')
    view.close()
    shown = out.getvalue()
    assert shown.count("\n") == 1  # rewritten in place, ended once
    assert "step 4/6 (66%)" in shown and shown.rstrip().endswith("done in 0 s")
    assert log.getvalue().count("\n") == 4


def test_without_a_terminal_only_starts_tenths_and_ends_are_printed():
    out = io.StringIO()
    view = ProgressView(io.StringIO(), out, tty=False, prefix="corpus_shards partition synth_xray")
    _lines(view, "1 - corpus_shards - STEP_START - Started")
    _lines(view, *[f"corpus_shards - step {i}/100 ({i}%) eta 1s" for i in range(1, 101)], level="INFO")
    _lines(view, "1 - corpus_shards - STEP_FAILURE - Execution of step failed: boom", level="ERROR")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + 11 + 1 and all(line.startswith("corpus_shards partition synth_xray ") for line in lines)
    assert "FAILED: Execution of step failed: boom" in lines[-1] and view.errors


def test_headline_table_fits_100_columns_and_points_at_the_csv():
    import pandas as pd

    columns = ["grounding_mean_iou", "grounding_acc_iou50", "closed_vqa_accuracy", "open_vqa_exact_match",
               *[f"extra_metric_{i}" for i in range(12)]]
    wide = pd.DataFrame([[0.5] * len(columns)] * 3, columns=columns,
                        index=["base_model", "rl", "MedMO-8B (reported)"])
    text = headline_table(wide)
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "gr_mean_iou" in text.splitlines()[0] and "more columns in reports/stage_ablation.csv" in text


def test_a_line_written_into_another_is_read_as_two():
    """A line cut short (Dagster's compute-log `tail -F`, terminated when a step ends) runs on into the
    next. The embedded engine event is still read as an event, and its text never reaches the terminal."""
    out = io.StringIO()
    view = ProgressView(io.StringIO(), out, tty=False)
    _lines(view, "1 - corpus_shards - STEP_START - Started")
    cut = RUN.format(level="INFO", rest="corpus_shards - step 50/100 (50%) eta 1s").rstrip("\n")
    view.feed(cut + RUN.format(level="DEBUG", rest="1 - base_model - STEP_START - Started execution"))
    shown = out.getvalue()
    assert "STEP_START" not in shown and "dagster" not in shown
    assert "base_model" in view.jobs and "step 50/100 (50%)" in shown


def test_a_job_whose_end_was_not_printed_is_done_when_the_command_succeeded():
    """Dagster's compute-log `tail -F` can drop a step's last console lines, STEP_SUCCESS among them."""
    out = io.StringIO()
    view = ProgressView(io.StringIO(), out, tty=False)
    _lines(view, "1 - corpus_shards - STEP_START - Started")
    view.close(succeeded=True)
    assert out.getvalue().splitlines()[-1].endswith("done in 0 s")
    failed = io.StringIO()
    view = ProgressView(io.StringIO(), failed, tty=False)
    _lines(view, "1 - corpus_shards - STEP_START - Started")
    view.close(succeeded=False)
    assert "done" not in failed.getvalue()
