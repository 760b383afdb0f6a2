"""A training or evaluation job holds images to its recipe's ``corpus.image_limits``, the budget
curation kept them under: with the defaults, an image kept under a raised budget was skipped by
the model's decoder at training, and every other thread of the job saw the defaults too."""

from __future__ import annotations

import argparse
import io
import threading

import numpy as np
import pytest
import yaml
from PIL import Image

from medmo_pipeline.config import checked_recipe
from medmo_pipeline.data import image_limits
from medmo_pipeline.data.image_limits import (
    ImageError,
    ImageLimits,
    limits_in_force,
    use_in_process,
    using_limits,
)
from medmo_pipeline.data.pixels import model_image
from medmo_pipeline.recipe_schema import DEFAULT_RECIPE, RECIPES_DIR


@pytest.fixture(autouse=True)
def default_limits():
    yield
    use_in_process(ImageLimits())


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_process_limits_reach_the_decoder_in_every_thread_and_curation_keeps_its_own():
    image = png(100, 100)
    assert model_image(image).size == (100, 100)  # within the defaults
    use_in_process(ImageLimits(max_pixels=5_000))  # a recipe's budget, here below the image
    with pytest.raises(ImageError, match="image_too_large"):
        model_image(image)
    seen = []

    def decode() -> None:
        try:
            model_image(image)
        except ImageError as error:
            seen.append(error.reason)

    worker = threading.Thread(target=decode)
    worker.start()
    worker.join()
    assert seen == ["image_too_large"]  # a thread of the job (a data loader's) decodes as the job does
    with using_limits(ImageLimits()):  # a source being curated keeps the limits put in force for it
        assert model_image(image).size == (100, 100)
    assert limits_in_force().max_pixels == 5_000


def test_a_job_loading_its_recipe_takes_the_recipes_image_limits(tmp_path):
    recipe = yaml.safe_load((RECIPES_DIR / f"{DEFAULT_RECIPE}.yaml").read_text())
    recipe["corpus"].setdefault("image_limits", {})["max_pixels"] = 12_345_678
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert image_limits.limits_in_force().max_pixels != 12_345_678
    checked_recipe(argparse.Namespace(recipe=str(path), expect_hash=None), "evaluation")
    assert limits_in_force().max_pixels == 12_345_678
