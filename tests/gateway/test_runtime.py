"""Process settings of the daemon: the garbage collector tuned after start-up."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import gc, json
import gateway.forward.pipeline  # a realistic start-up: the pipeline's imports
before = gc.get_threshold()
from gateway.runtime import GC_THRESHOLDS, tune_gc
tune_gc()
print(json.dumps({"before": before, "after": gc.get_threshold(), "want": GC_THRESHOLDS,
                  "frozen": gc.get_freeze_count(), "young": gc.get_count()[0]}))
"""


def test_tune_gc_freezes_start_up_objects_and_raises_the_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    doc = json.loads(out.stdout)
    assert doc["before"][0] == 700  # CPython's default, which the daemon replaces
    assert doc["after"] == list(doc["want"])
    assert doc["after"][0] > doc["before"][0]
    assert doc["frozen"] > 20_000  # modules, models, protocol tables: out of every scan
    assert doc["young"] < 1_000
