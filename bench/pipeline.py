"""Store-and-forward end to end: publisher -> Mosquitto -> metergw -> VictoriaMetrics.

Real servers; metergw as its own process (``python bench/_runner.py``, or the
whole daemon where said). Phases (``--phases`` picks some, default all):

a. one reading per message: messages/s from the first publish until every
   reading is in VictoriaMetrics. Target >= 5,000 messages/s.
b. sustained, 100 readings per message, as fast as QoS 1 allows. Target >= 80%
   of the tightest stage ceiling.
c. hostile: b with 1% hostile messages mixed in (garbage, huge numbers, bad
   timestamps, wrong types; bench/_publisher.py): valid readings/s as a share
   of b's, and every valid reading in VictoriaMetrics exactly once.
d. shared: two gateways on ``$share/bench/meters/v1/+/readings``, each with its
   own buffer, one TSDB: readings/s against one gateway on the same topic.
backlog: VictoriaMetrics down, 1M readings buffered (peak RSS), then up: the
   drain rate, against the TSDB's ceiling. Target >= 200k/s, < 80 MB.
daemon: the backlog phase with the whole daemon (``metergw run``).
kill: kill -9 of metergw in a loop while a publisher sends; nothing acknowledged
   lost, nothing stored twice.

Each of a, b, c and the backlog measures its stage ceilings in the same run
(bench/_ceilings.py: SQLite group commit on this disk, the TSDB's write rate,
the broker's QoS 1 rate for the same payloads) and reports metergw's figure as
a share of the tightest. Loss is counted per reading (bench/_ledger.py): in
VictoriaMetrics, still in a buffer (undelivered, not lost), or lost.

A phase that needs a feature this build lacks reports "not supported by this
build" with the reason instead of failing. ``--quick`` runs a short version.
Prints a table, writes bench/results/pipeline.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _ceilings as ceilings  # noqa: E402
from bench._gateway import Stalled  # noqa: E402
from bench._measure import machine  # noqa: E402
from bench._phases import (  # noqa: E402
    phase_backlog,
    phase_hostile,
    phase_kill,
    phase_shared,
    phase_stream,
)
from bench._report import table  # noqa: E402
from tests.servers import MosquittoServer, VictoriaMetricsServer  # noqa: E402

PHASES = ("a", "b", "c", "d", "backlog", "daemon", "kill")
ALIASES = {"single": "a", "sustained": "b", "hostile": "c", "shared": "d", "kill_soak": "kill"}


def sizes(quick: bool) -> dict[str, int]:
    """Messages or readings per phase."""
    return {
        "single_msgs": 20_000 if quick else 100_000,
        "batch_msgs": 2_000 if quick else 10_000,
        "backlog": 200_000 if quick else 1_000_000,
        "cycles": 10 if quick else 100,
    }


def run(phases: list[str], args: argparse.Namespace, work: Path, results: dict[str, Any]) -> None:
    n = sizes(args.quick)
    if args.backlog:
        n["backlog"] = args.backlog
    lossy = {
        "seq_step": args.seq_step,
        "per_msg": args.backlog_per_message,
        "old_stop": args.old_stop,
    }
    broker, vm = MosquittoServer(work), VictoriaMetricsServer(work)
    broker.start()
    vm.start()
    shared: dict[str, Any] = {}  # stage ceilings that do not depend on the payload

    def common() -> dict[str, Any]:
        if not shared:
            shared["sqlite_group_commit"] = ceilings.sqlite_commit(work)
            shared["tsdb_write"] = ceilings.tsdb_write(vm)
        return dict(shared)

    def record(key: str, fn: Any, *args: Any, **kw: Any) -> None:
        try:
            results[key] = fn(*args, **kw)
        except Stalled as exc:
            results[key] = {"not_supported_by_this_build": str(exc)}
        print(key, results[key], flush=True)

    try:
        if "a" in phases:
            record("single", phase_stream, work, "a", broker, vm, common(), 1, n["single_msgs"], 1)
        if "b" in phases:
            record("sustained", phase_stream, work, "b", broker, vm, common(), 2_000_000,
                   n["batch_msgs"], 100)  # fmt: skip
        if "c" in phases:
            record("hostile", phase_hostile, work, broker, vm, common(), 3_000_000,
                   n["batch_msgs"], results.get("sustained"))  # fmt: skip
        if "d" in phases:
            record("shared", phase_shared, work, broker, vm, 4_000_000, n["batch_msgs"])
        if "backlog" in phases:
            record("backlog", phase_backlog, work, broker, vm, common(), n["backlog"], 10_000_000,
                   **lossy)  # fmt: skip
        if "daemon" in phases:
            record("backlog_daemon", phase_backlog, work, broker, vm, common(), n["backlog"],
                   15_000_000, daemon=True, **lossy)  # fmt: skip
        if "kill" in phases:
            record("kill_soak", phase_kill, work, broker, vm, n["cycles"], 20_000_000)
    finally:
        broker.kill()
        vm.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated subset of {','.join(PHASES)} (default: all)",
    )
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (logs, buffers)")
    parser.add_argument(
        "--seq-step",
        type=int,
        default=1,
        help="backlog phases: publish every n-th seq (a lossy link; gap events in the buffer)",
    )
    parser.add_argument(
        "--backlog-per-message", type=int, choices=(1, 100), default=100, help="backlog phases"
    )
    parser.add_argument("--backlog", type=int, help="readings in the backlog phases")
    parser.add_argument(
        "--old-stop",
        action="store_true",
        help="backlog phases: also stop and count as the old bench did (bench/README.md)",
    )
    args = parser.parse_args()
    phases = [ALIASES.get(p.strip(), p.strip()) for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "phases": phases}
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
        run(phases, args, Path(args.keep), results)
    else:
        with tempfile.TemporaryDirectory(prefix="metergw-bench-") as tmp:
            run(phases, args, Path(tmp), results)
    print()
    print(table(results))
    name = "pipeline.json" if set(phases) == set(PHASES) else "pipeline-partial.json"
    out = ROOT / "bench" / "results" / name
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
