"""Pipes messages are parsed only as whole lines, however the job's writes split them."""

import json
import sys
import threading
import time

import dagster as dg

from resources.pipes_messages import WholeLineTempFileMessageReader, complete_lines


def test_a_line_written_in_two_parts_is_read_once_whole(tmp_path):
    path = tmp_path / "messages.jsonl"
    message = json.dumps({"method": "log", "params": {"message": "x" * 5000}})
    path.write_text(message[:74], encoding="utf-8")  # what the reader finds first: part of a line
    stop = threading.Event()

    def finish_the_line():
        time.sleep(0.2)
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(message[74:] + "\n")
            stream.write(json.dumps({"method": "report"}) + "\n")
        time.sleep(0.2)
        stop.set()

    writer = threading.Thread(target=finish_the_line)
    writer.start()
    lines = list(complete_lines(str(path), stop.is_set))
    writer.join()
    assert [json.loads(line) for line in lines] == [json.loads(message), {"method": "report"}]


def test_an_unterminated_last_line_is_handed_over_after_the_stop(tmp_path):
    path = tmp_path / "messages.jsonl"
    path.write_text('{"a": 1}\n{"b": 2}\n{"cut', encoding="utf-8")
    assert list(complete_lines(str(path), lambda: True)) == ['{"a": 1}\n', '{"b": 2}\n', '{"cut']


JOB = """
import sys
from dagster_pipes import open_dagster_pipes
with open_dagster_pipes() as pipes:
    for i in range(40):  # long messages, each reaching the file in several writes
        pipes.log.info(f"{i} " + "y" * 200_000)
    pipes.report_asset_materialization(metadata={"last": 39})
"""


def test_a_real_pipes_job_with_long_messages_reports_its_materialization(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(JOB, encoding="utf-8")

    @dg.asset
    def long_messages(context: dg.AssetExecutionContext):
        client = dg.PipesSubprocessClient(message_reader=WholeLineTempFileMessageReader())
        return client.run(command=[sys.executable, str(script)], context=context).get_materialize_result()

    result = dg.materialize([long_messages], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    materialization = result.asset_materializations_for_node("long_messages")[0]
    assert materialization.metadata["last"].value == 39
