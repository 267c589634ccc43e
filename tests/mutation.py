"""Mutation testing: each module is mutated and run against its own tests only.

Usage (from the repository root, with the ``mutate`` extra installed)::

    .venv/bin/python tests/mutation.py                      # every module below
    .venv/bin/python tests/mutation.py protocols/dlt645/frame.py

``make mutate`` runs it (``MODULE=path make mutate`` for one module). mutmut 3
copies the project into ``mutants/`` (git-ignored) and runs each mutant there;
its configuration is ``[tool.mutmut]`` in pyproject.toml, and this script sets
the two keys that differ per module: which file is mutated and which tests
run. The summary (killed/total and every survivor, per module) is printed and
written to ``var/mutation/<module>.txt``. See docs/mutation.md.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

# Module to mutate -> the tests that are its own (a mutant counts as killed
# only if one of these fails).
MODULES: dict[str, list[str]] = {
    "protocols/dlt645/bcd.py": ["tests/protocols/dlt645"],
    "protocols/dlt645/frame.py": ["tests/protocols/dlt645"],
    "gateway/validate.py": ["tests/gateway/test_validate.py"],
    "gateway/ingest/decode.py": [
        "tests/gateway/ingest/test_decode.py",
        "tests/gateway/ingest/test_decode_bounds.py",
        "tests/gateway/ingest/test_decode_job.py",
        "tests/gateway/ingest/test_decode_values.py",
    ],
}
ROOT = Path(__file__).resolve().parent.parent
SUMMARY_DIR = ROOT / "var" / "mutation"


def _run_one(module: str) -> None:
    """In a child process: configure mutmut for ``module`` and run it."""
    # mutmut reads these two keys only from pyproject.toml and has no option
    # for them, so its loaded config is replaced before the CLI first reads it
    # (written against mutmut 3.8: if these names change, this fails loudly).
    from mutmut import configuration

    base = configuration._load_config()
    configuration._config = dataclasses.replace(
        base,
        only_mutate=[module],
        pytest_add_cli_args_test_selection=MODULES[module],
    )
    from mutmut.__main__ import cli

    cli(["run"], standalone_mode=False)


def _summary(module: str, seconds: float) -> str:
    """Killed/total and the mutants not killed of ``module``, from mutmut's result files.

    A mutant that makes its tests hang is stopped by mutmut's time limit
    (status ``timeout``); it was caught, so it counts as killed here too.
    """
    from mutmut.stats import status_by_exit_code

    meta = json.loads((ROOT / "mutants" / (module + ".meta")).read_text())
    statuses = {k: status_by_exit_code[v] for k, v in meta["exit_code_by_key"].items()}
    total = len(statuses)
    counts = Counter(statuses.values())
    killed = counts["killed"] + counts["timeout"]
    breakdown = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines = [
        f"{module}: {killed}/{total} killed ({100 * killed / max(total, 1):.1f}%)",
        f"  ({breakdown}; run time {seconds:.0f} s)",
    ]
    for name, status in sorted(statuses.items()):
        if status not in ("killed", "timeout"):
            lines.append(f"  {status}: {name}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        _run_one(argv[1])
        return 0
    modules = argv or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    SUMMARY_DIR.mkdir(parents=True, exist_ok=True)
    for module in modules:
        # A fresh copy per module: mutmut's cached stats map tests to functions
        # for one test selection only.
        shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, __file__, "--one", module], cwd=ROOT, check=False)
        if proc.returncode != 0:
            print(f"mutmut failed on {module} (exit {proc.returncode})", file=sys.stderr)
            return 1
        text = _summary(module, time.monotonic() - started)
        out = SUMMARY_DIR / (module.replace("/", ".").removesuffix(".py") + ".txt")
        out.write_text(text)
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
