"""Rewards of the RL stage (TRL signature), box parsing, and the registry recipes pick them from."""

from medmo_pipeline.rewards.box import box_reward, pairwise_giou
from medmo_pipeline.rewards.labels import (
    closed_answer,
    extract_answer,
    label_match,
    normalize_answer,
    option_letter,
    tag_count_score,
)
from medmo_pipeline.rewards.registry import (
    REWARDS,
    BoundReward,
    RewardDefinition,
    build_reward_functions,
    completion_text,
)
from medmo_pipeline.schema.box_text import parse_boxes, parse_labeled_boxes

__all__ = [
    "REWARDS",
    "BoundReward",
    "RewardDefinition",
    "box_reward",
    "build_reward_functions",
    "closed_answer",
    "completion_text",
    "extract_answer",
    "label_match",
    "normalize_answer",
    "option_letter",
    "pairwise_giou",
    "parse_boxes",
    "parse_labeled_boxes",
    "tag_count_score",
]
