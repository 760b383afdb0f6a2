"""Recipe optimiser sections become the trainers' arguments."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from medmo_pipeline.config import OptimRecipe
from medmo_pipeline.training.common import trainer_arguments


def test_dataloader_workers_reach_the_trainer_and_default_to_zero():
    optim = OptimRecipe(learning_rate=1e-3, per_device_train_batch_size=4)
    assert trainer_arguments(optim, output_dir=Path("out"), seed=1)["dataloader_num_workers"] == 0
    optim = OptimRecipe(learning_rate=1e-3, per_device_train_batch_size=4, dataloader_num_workers=3)
    assert trainer_arguments(optim, output_dir=Path("out"), seed=1)["dataloader_num_workers"] == 3
    with pytest.raises(ValidationError, match="dataloader_num_workers"):
        OptimRecipe(learning_rate=1e-3, per_device_train_batch_size=4, dataloader_num_workers=-1)
