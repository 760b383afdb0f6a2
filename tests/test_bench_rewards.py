"""The rewards bench runs end to end in its shortest setting and prints both sections (no timing checks)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_rewards_bench_quick_prints_both_sections():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "rewards.py"), "--quick", "--steps", "2"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=600,
    ).stdout
    assert "numpy calls/s" in out
    assert "rewards: " in out and "s per step (" in out
    for name in ("box", "label_accuracy", "soft_overlong"):
        assert f"{name}:" in out
    assert "worst case, box reward" in out
