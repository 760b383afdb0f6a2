"""Grounding sets that keep boxes in the reply (MedSG) get pixel boxes from their declared scale, so the
RL box reward has a gold box to score; a record with a box outside that scale's frame is quarantined."""

from __future__ import annotations

from fixtures_formats import build_fixture

from medmo_pipeline.data.adapters import iter_samples
from medmo_pipeline.data.registry import load_registry
from medmo_pipeline.training.rl_rows import has_signal

OPTIONS = {"file": "train.json", "image_dir": "images", "task": "grounding"}


def test_relative_reply_boxes_become_pixel_boxes_of_a_single_image(tmp_path):
    build_fixture("llava_json", tmp_path, OPTIONS)
    rows = list(iter_samples("llava_json", tmp_path, {**OPTIONS, "reply_box_scale": "relative_1000"}))
    several = [row for row in rows if len(row["images"]) > 1]
    assert several and all(row["boxes"] == [] for row in several)  # which image a box is on: the reply says
    for row in (row for row in rows if len(row["images"]) == 1):
        width, height = row["images"][0]["width"], row["images"][0]["height"]
        assert row["boxes"] == [{"label": "A lesion", "x1": 10 * width / 1000, "y1": 20 * height / 1000,
                                 "x2": 300 * width / 1000, "y2": 400 * height / 1000}]
        assert has_signal(row)


def test_without_a_declared_scale_no_box_is_guessed_and_rl_leaves_the_row_out(tmp_path):
    build_fixture("llava_json", tmp_path, OPTIONS)
    rows = list(iter_samples("llava_json", tmp_path, OPTIONS))
    assert all(row["boxes"] == [] and not has_signal(row) for row in rows)


def test_a_box_outside_the_declared_frame_is_quarantined_with_the_reason(tmp_path):
    from medmo_pipeline.data.adapters import conversation

    build_fixture("llava_json", tmp_path, OPTIONS)  # boxes reach 400, images are smaller than that
    outcomes = list(conversation.iter_outcomes(tmp_path, {**OPTIONS, "reply_box_scale": "pixels"}))
    quarantined = [o for o in outcomes if type(o) is not dict]
    assert len(quarantined) == 2 and all(o.reason == "bad_number" for o in quarantined)  # the single-image ones
    assert all("outside the" in o.detail and "scale 'pixels'" in o.detail for o in quarantined)


def test_medsg_declares_its_reply_box_scale():
    [adapter] = load_registry().get("medsg").adapters
    assert adapter.options["reply_box_scale"] == "pixels"  # MedSG-188K writes Qwen2.5-VL pixel boxes
