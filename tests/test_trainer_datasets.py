"""The trainers' datasets: built straight into Arrow, they hold what `Dataset.from_dict` would."""

import datasets

from medmo_pipeline import reply_format
from medmo_pipeline.data import synthetic
from medmo_pipeline.data.prompts import formatted_messages
from medmo_pipeline.training.examples import rl_dataset, sft_dataset


def _rows():
    return [r for s in ("synth_xray", "synth_cells", "synth_medqa")
            for r in synthetic.generate_rows(s, "train", 6, image_size=48)]


def _from_dict(dataset):
    return datasets.Dataset.from_dict({name: dataset.data.column(name).to_pylist() for name in dataset.features},
                                      features=dataset.features)


def test_sft_dataset_matches_from_dict_and_decodes_images():
    rows = _rows()
    built = sft_dataset(rows)
    assert len(built) == len(rows)
    assert built.to_list() == _from_dict(built).to_list()
    first = built[0]
    assert first["messages"] == formatted_messages(rows[0]["messages"], "plain")
    assert [img.size for img in first["images"]] == [(img["width"], img["height"]) for img in rows[0]["images"]]
    assert built[next(i for i, r in enumerate(rows) if not r["images"])]["images"] == []  # text-only rows


def test_rl_dataset_keeps_reward_columns():
    rows = [r for r in _rows() if r["boxes"]]
    built = rl_dataset(rows)
    assert built.to_list() == _from_dict(built).to_list()
    assert built[0]["boxes"][0].keys() == {"x1", "y1", "x2", "y2", "label"}
    assert built[0]["image_width"] == 48


def test_fingerprint_follows_the_rows_drawn():
    rows = _rows()
    assert sft_dataset(rows)._fingerprint == sft_dataset(list(rows))._fingerprint
    assert sft_dataset(rows)._fingerprint != sft_dataset(rows[::-1])._fingerprint
    assert sft_dataset(rows)._fingerprint != sft_dataset(rows[:-1])._fingerprint


def test_reply_format_decides_prompt_and_target():
    rows = [r for s in ("synth_xray", "synth_cells") for r in synthetic.generate_rows(s, "train", 40, image_size=48)]
    grounding = [r for r in rows if r["task"] == "grounding"]  # synthetic grounding rows carry reasoning
    asked = next(r for r in grounding if reply_format.asks_for_format(r["id"]))
    plain_half = next(r for r in grounding if not reply_format.asks_for_format(r["id"]))
    presence = next(r for r in rows if r["task"] == "vqa")  # these carry none
    question, reply = (m["content"] for m in asked["messages"])
    reasoning, answer = reply_format.split_reasoning(reply)
    assert reasoning and answer.startswith("lesion <box>")
    plain = sft_dataset([asked, plain_half, presence], "plain")
    tagged = sft_dataset([asked, plain_half, presence], "think_answer")
    assert [m["content"] for m in plain[0]["messages"]] == [question, answer]
    assert [m["content"] for m in tagged[0]["messages"]] == [
        f"{question}\n{reply_format.FORMAT_INSTRUCTION}", f"<think>{reasoning}</think><answer>{answer}</answer>"]
    # The other half is asked plainly and answers plainly, as a benchmark asks; rows without reasoning too.
    assert tagged[1]["messages"] == plain[1]["messages"] == formatted_messages(plain_half["messages"], "plain")
    assert tagged[2]["messages"] == plain[2]["messages"] == formatted_messages(presence["messages"], "plain")
    assert plain._fingerprint != tagged._fingerprint
    share = sum(map(reply_format.asks_for_format, (r["id"] for r in grounding))) / len(grounding)
    assert 0.25 < share < 0.75
    rl = rl_dataset([asked, presence], "think_answer")
    assert [p[0]["content"] for p in rl["prompt"]] == [
        f"{r['messages'][0]['content']}\n{reply_format.FORMAT_INSTRUCTION}" for r in (asked, presence)]
