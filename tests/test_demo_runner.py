"""`medmo demo` runs independent Dagster commands (the corpus partitions) side by side."""

import json
import sys

from medmo_pipeline.cli import run_together


def _job(tmp_path, name: str, *, seconds: float = 0.4, code: int = 0) -> list[str]:
    """A command that records when it ran, prints three lines and exits with `code`."""
    script = (
        "import json, sys, time\n"
        f"start = time.time(); time.sleep({seconds})\n"
        f"for i in range(3): print('{name} line', i, flush=True)\n"
        f"open({str(tmp_path / (name + '.json'))!r}, 'w').write(json.dumps([start, time.time()]))\n"
        f"sys.exit({code})\n"
    )
    return [sys.executable, "-c", script]


def _spans(tmp_path, names):
    return {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in names if (tmp_path / f"{n}.json").exists()}


def _most_at_once(spans) -> int:
    events = sorted([(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_commands_run_side_by_side_up_to_the_slots_each_logged_whole(tmp_path, capsys):
    names = ["a", "b", "c"]
    group = [(f"partition {n}", _job(tmp_path, n)) for n in names]
    assert run_together(group, {}, tmp_path / "logs", slots=2) is None
    spans = _spans(tmp_path, names)
    assert set(spans) == set(names)
    assert _most_at_once(spans) == 2  # two at once, never three
    out = capsys.readouterr().out
    for n in names:  # the terminal gets a line per command; its log, all its output
        assert f"== partition {n}: done" in out and f"{n} line" not in out
        assert (tmp_path / "logs" / f"medmo-partition_{n}.log").read_text() == "".join(f"{n} line {i}\n" for i in range(3))


def test_a_failure_is_reported_and_nothing_further_starts(tmp_path, capsys):
    group = [("bad", _job(tmp_path, "bad", seconds=0.0, code=3)), ("after", _job(tmp_path, "after"))]
    assert run_together(group, {}, tmp_path / "logs", slots=1) == ("bad", 3)
    assert set(_spans(tmp_path, ["bad", "after"])) == {"bad"}
    out = capsys.readouterr().out
    assert "== bad: FAILED (exit 3)" in out and "bad line 2" in out  # the end of its log


def test_a_lone_command_streams_and_reports_its_exit_code(tmp_path):
    assert run_together([("one", _job(tmp_path, "one", seconds=0.0, code=5))], {}, tmp_path / "logs") == ("one", 5)


def test_corpus_partitions_start_with_the_largest():
    from medmo_pipeline.cli import longest_first
    from medmo_pipeline.config import CorpusRecipe

    corpus = CorpusRecipe(kind="synthetic", synthetic={"train_rows": {"a": 10, "b": 300, "c": 20}, "eval_rows": {"d": 5}})
    assert longest_first(corpus) == ["b", "c", "a", "d"]  # "d" only has held-out rows
    assert sorted(longest_first(corpus)) == sorted(corpus.source_names())
