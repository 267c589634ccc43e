"""Process settings of the daemon: the garbage collector and the C allocator."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

SCRIPT = """
import gc, json
import gateway.daemon  # a realistic start-up: the daemon's imports
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


MALLOC = """
import json
import os
import platform
from gateway.runtime import tune_malloc
print(json.dumps(tune_malloc()))
"""


def run_malloc(env: dict[str, str]) -> dict[str, int]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", MALLOC],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=base | env,
    )
    result: dict[str, int] = json.loads(out.stdout)
    return result


GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@GLIBC
def test_tune_malloc_sets_arenas_and_a_fixed_mmap_threshold_on_glibc() -> None:
    assert run_malloc({}) == {"arena_max": 2, "mmap_threshold": 128 * 1024}


@GLIBC
def test_tune_malloc_leaves_what_the_environment_set() -> None:
    assert run_malloc({"MALLOC_ARENA_MAX": "4"}) == {"mmap_threshold": 128 * 1024}
    assert run_malloc({"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}) == {}
