"""Every asset key and check name of the graph, declared here once.

Keys follow the recipe's checkpoint names: ``base_model``, ``stageN_checkpoint``, ``rl_policy``, each
with an ``..._eval_table``; each training stage reads a ``<stage>_mixture`` cut from ``corpus_shards``.
The corpus checks are the ones the corpus job reports (``medmo_pipeline.data.build.CHECKS``).
"""

import dagster as dg

from medmo_pipeline.data.build import CHECKS as CORPUS_CHECKS

SOURCES = dg.AssetKey("corpus_sources")
CORPUS = dg.AssetKey("corpus_shards")
BASE = dg.AssetKey("base_model")
STAGE_ABLATION = dg.AssetKey("stage_ablation")

__all__ = ["BASE", "CORPUS", "CORPUS_CHECKS", "SOURCES", "STAGE_ABLATION", "checkpoint_key", "eval_key",
           "guard_check_key", "mixture_key"]


def checkpoint_key(name: str) -> dg.AssetKey:
    """Recipe checkpoint name -> asset key: base_model, stageN_checkpoint, rl_policy."""
    if name == "base_model":
        return BASE
    return dg.AssetKey("rl_policy" if name == "rl" else f"{name}_checkpoint")


def eval_key(name: str) -> dg.AssetKey:
    """The evaluation table of checkpoint ``name``."""
    return dg.AssetKey(f"{checkpoint_key(name).path[-1]}_eval_table")


def mixture_key(name: str) -> dg.AssetKey:
    """What stage ``name`` trains on."""
    return dg.AssetKey(f"{name}_mixture")


def guard_check_key(name: str) -> dg.AssetCheckKey:
    """The regression guard on checkpoint ``name``'s evaluation table."""
    return dg.AssetCheckKey(eval_key(name), f"{checkpoint_key(name).path[-1]}_no_regression")
