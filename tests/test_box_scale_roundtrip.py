"""The box scale, end to end through the processor: a ground-truth box in pixels becomes the 0-1000
text the model is trained on; that text names the same region in the image the processor actually
feeds the model (after resizing); parsed back, it earns the box reward 1.0 against the original."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medmo_pipeline.rewards import build_reward_functions
from medmo_pipeline.schema.boxes import format_box_answer, pixels_to_relative

SIZES_AND_BOXES = [
    ((500, 375), (120.0, 80.0, 310.0, 240.0)),
    ((1280, 960), (700.0, 100.0, 1100.0, 520.0)),
    ((333, 777), (30.0, 400.0, 200.0, 700.0)),
]


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    from medmo_pipeline.model.loading import load_processor, set_image_resolution
    from medmo_pipeline.model.tiny import build_tiny_base_model

    texts = ["lesion <box>[[0, 1, 2, 3]]</box> 456789 yes no"] * 20
    directory = build_tiny_base_model(tmp_path_factory.mktemp("tiny") / "base", texts=texts, spec={}, seed=1)
    processor = load_processor(directory)
    set_image_resolution(processor, 128 * 128)  # every image below is resized down
    return processor


def _bright_box(image: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(image.mean(axis=2) > 127)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize(("size", "box"), SIZES_AND_BOXES)
def test_zero_to_thousand_text_names_the_region_the_model_sees(processor, size, box):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    width, height = size
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    x1, y1, x2, y2 = (int(v) for v in box)
    pixels[y1:y2, x1:x2] = 255
    image = Image.fromarray(pixels)

    ip = processor.image_processor
    out = ip(images=[image], return_tensors="pt")
    _, grid_h, grid_w = out["image_grid_thw"][0].tolist()
    resized_h, resized_w = grid_h * ip.patch_size, grid_w * ip.patch_size
    assert (resized_w, resized_h) != (width, height)  # the processor did resize
    assert (resized_h, resized_w) == smart_resize(height, width, factor=ip.patch_size * ip.merge_size,
                                                  min_pixels=ip.size["shortest_edge"],
                                                  max_pixels=ip.size["longest_edge"])

    relative = pixels_to_relative(box, width, height)
    seen = _bright_box(np.asarray(image.resize((resized_w, resized_h), Image.BILINEAR)))
    seen_relative = (seen[0] / resized_w * 1000, seen[1] / resized_h * 1000,
                     seen[2] / resized_w * 1000, seen[3] / resized_h * 1000)
    # Within two resized pixels: the 0-1000 numbers describe the resized image the model sees...
    tolerance = 2 * 1000 / min(resized_w, resized_h)
    assert np.allclose(relative, seen_relative, atol=tolerance)
    # ...whereas absolute pixels of the resized image (Qwen2.5-VL's convention) would not.
    assert not np.allclose(relative, seen, atol=tolerance)

    answer = format_box_answer("lesion", [relative])
    [reward_fn], _ = build_reward_functions({"box": {}})
    truth = [{"label": "lesion", "x1": box[0], "y1": box[1], "x2": box[2], "y2": box[3]}]
    [reward] = reward_fn(["prompt"], [answer], task=["grounding"], boxes=[truth], image_width=[width],
                         image_height=[height], answer=[answer], choices=[[]])
    assert reward == pytest.approx(1.0, abs=0.005)
