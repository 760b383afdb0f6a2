"""The one peak-RSS helper: this process's own peak, which a reset starts again from now."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from medmo_pipeline.process_memory import address_space_kib, current_rss_kib, peak_rss_kib

CHILD = """
import json
from medmo_pipeline.process_memory import current_rss_kib, peak_rss_kib, reset_peak_rss
assert reset_peak_rss()
before = current_rss_kib()
held = bytearray(64 << 20)
held[::4096] = b"\\1" * len(held[::4096])  # touch every page: resident
after_touch = peak_rss_kib()
del held
assert reset_peak_rss()
print(json.dumps({"before": before, "after_touch": after_touch, "after_reset": peak_rss_kib()}))
"""


def test_the_peak_follows_what_this_process_touches_and_starts_again_when_reset():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True,
                          cwd=Path(__file__).resolve().parents[1])  # this checkout's library first
    child = json.loads(done.stdout)
    assert child["after_touch"] - child["before"] >= 60 << 10  # the 64 MiB touched
    assert child["after_reset"] < child["after_touch"] - (48 << 10)  # freed, and the peak starts again


def test_the_figures_are_consistent_in_this_process():
    assert 0 < current_rss_kib() <= peak_rss_kib() <= address_space_kib()
