"""The scale rehearsal: the paper recipe's structure at a size a 2-core CPU runs in minutes.

Every stage of ``recipes/paper.yaml`` (its mixtures, ZeRO-3, two processes under torchrun) trains a
randomly initialised Qwen3-VL with the 8B's layer structure and small widths, over a synthetic
corpus laid out like the registry's 45 datasets with millions of rows of tiny images. See
docs/paper_scale.md for what it shows and what only a GPU cluster can.
"""
