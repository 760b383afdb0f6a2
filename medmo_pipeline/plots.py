"""Pictures people would rather look at than read: training curves, reward trends."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (window shrinks at the start so the curve starts at step 1)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(0, idx - window)
    return (cumulative[idx] - cumulative[lo]) / (idx - lo)


def plot_training_curves(history: list[dict], keys: list[str], path: Path, title: str) -> Path | None:
    """One panel per logged metric (loss, token accuracy, entropy, rewards...), raw and smoothed."""
    present = [k for k in keys if any(k in row for row in history)]
    if not present:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(present), figsize=(4.2 * len(present), 3.2), squeeze=False)
    for ax, key in zip(axes[0], present):
        rows = [r for r in history if key in r]
        steps = np.array([r["step"] for r in rows])
        values = np.array([r[key] for r in rows], dtype=float)
        ax.plot(steps, values, color="#9ab", lw=1, label="logged")
        ax.plot(steps, smooth(values, max(1, len(values) // 10)), color="#135", lw=2, label="smoothed")
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_reward_trend(history: list[dict], key: str, path: Path, title: str, window: int = 10) -> Path | None:
    """Like the paper's Figure 16: mean reward per step, rolling std band, smoothed trend."""
    rows = [r for r in history if key in r]
    if not rows:
        return None
    plt = _pyplot()
    steps = np.array([r["step"] for r in rows])
    values = np.array([r[key] for r in rows], dtype=float)
    trend = smooth(values, window)
    spread = np.array([values[max(0, i - window + 1) : i + 1].std() for i in range(values.size)])
    fig, ax = plt.subplots(figsize=(6, 3.4))
    ax.fill_between(steps, trend - spread, trend + spread, color="#7ab", alpha=0.3, label=f"rolling std ({window})")
    ax.plot(steps, values, color="#369", lw=1, alpha=0.7, label="mean per step")
    ax.plot(steps, trend, color="#c33", lw=2, label="smoothed trend")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def markdown_image(path: Path, alt: str) -> str:
    """A PNG as Markdown with an inline (data URI) image: the Dagster UI shows Markdown metadata with
    the picture in it, where a file path alone shows as text."""
    import base64

    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"![{alt}](data:image/png;base64,{encoded})"
