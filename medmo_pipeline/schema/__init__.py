"""The bottom layer: what every other part of the pipeline agrees on (docs/architecture.md).

- :mod:`.rows`: the sample contract (one training or evaluation example), its tasks and accessors
- :mod:`.boxes`: the box format: pixels, Qwen3-VL's 0-1000 scale, the MedMO answer form
- :mod:`.box_text`: reading boxes back out of model or data-set text

Nothing here imports another part of ``medmo_pipeline``; data, model, rewards and everything above
import from here.
"""
