"""The table bench/pipeline.py prints: each figure, its target, and its share of a ceiling."""

from __future__ import annotations

from typing import Any


def _why(r: dict[str, Any]) -> str:
    """The headline of a "not supported" reason (the whole reason is in the JSON)."""
    return str(r["not_supported_by_this_build"]).split(" (", 1)[0]


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int | float) else str(v)


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []

    def cores_rows(r: dict[str, Any]) -> None:
        c = r.get("cores", {})
        if "all_busy_readings_per_s" in c:
            rows.append(
                (
                    f"  all {c['cores']} cores busy at",
                    f"{_n(c['all_busy_readings_per_s'])} readings/s "
                    f"({c['share_of_all_busy']:.0%} reached)",
                    "",
                )
            )
        if "best_possible_readings_per_s" in c:
            rows.append(
                (
                    "  best possible here (bare insert)",
                    f"{_n(c['best_possible_readings_per_s'])} readings/s "
                    f"= {c['best_possible_share_of_tightest']:.0%} of tightest",
                    "",
                )
            )

    def ceiling_rows(r: dict[str, Any]) -> None:
        for stage, c in r.get("ceilings", {}).items():
            rows.append((f"  ceiling: {stage}", f"{_n(c['readings_per_s'])} readings/s", ""))

    for key, title in (
        ("single", "a. 1 reading/message"),
        ("sustained", "b. 100 readings/message"),
    ):
        r = results.get(key)
        if r is None:
            continue
        if "not_supported_by_this_build" in r:
            rows.append((title, _why(r), ""))
            continue
        target = ">= 5,000 messages/s" if key == "single" else ">= 80% of tightest"
        rows.append((title, f"{_n(r['end_to_end_messages_per_s'])} messages/s end to end", target))
        rows.append(
            (
                "  readings/s (ingest, end to end)",
                f"{_n(r['ingest_readings_per_s'])}, {_n(r['end_to_end_readings_per_s'])}",
                "",
            )
        )
        rows.append(
            (
                f"  share of tightest ({r['tightest_stage']})",
                f"{r['share_of_tightest']:.0%}",
                ">= 80%" if key == "sustained" else "",
            )
        )
        ceiling_rows(r)
        cores_rows(r)
        rows.append(
            (
                "  lost / undelivered / listed twice",
                f"{r['count']['lost']} / {r['count']['undelivered_in_buffer']} / "
                f"{r['count']['listed_twice_by_tsdb']}",
                "0 / 0 / 0",
            )
        )
    r = results.get("hostile")
    if r is not None:
        if "not_supported_by_this_build" in r:
            rows.append(("c. 1% hostile", _why(r), ""))
        else:
            rows.append(
                (
                    "c. 1% hostile: valid readings/s",
                    f"{_n(r['end_to_end_readings_per_s'])} ({r['share_of_all_valid']:.0%} "
                    "of all-valid)",
                    "",
                )
            )
            rows.append(
                ("  valid readings exactly once", str(r["valid_readings_exactly_once"]), "True")
            )
            rows.append(
                (
                    "  hostile sent / rejected / quarantined",
                    f"{r['hostile_messages']} / {r['payloads_rejected']} / {r['quarantined']}",
                    "",
                )
            )
    r = results.get("shared")
    if r is not None:
        if "not_supported_by_this_build" in r:
            rows.append(("d. shared subscription", _why(r), ""))
        else:
            rows.append(
                (
                    "d. 2 instances vs 1 (readings/s)",
                    f"{_n(r['two_instances']['end_to_end_readings_per_s'])} vs "
                    f"{_n(r['one_instance']['end_to_end_readings_per_s'])}: "
                    f"x{r['ratio_two_to_one']} on {r['cpus']} cores",
                    "~1 on 2 cores",
                )
            )
            c = r["two_instances"]["count"]
            rows.append(
                (
                    "  lost / listed twice (2 instances)",
                    f"{c['lost']} / {c['listed_twice_by_tsdb']}",
                    "0 / 0",
                )
            )
    for key, title in (("backlog", "backlog drain"), ("backlog_daemon", "  whole daemon")):
        r = results.get(key)
        if r is None:
            continue
        if "not_supported_by_this_build" in r:
            rows.append((title, _why(r), ""))
            continue
        rows.append(
            (
                title,
                f"{_n(r['drain_readings_per_s'])} readings/s "
                f"({r['drain_share_of_tsdb_ceiling']:.0%} of the TSDB's ceiling)",
                ">= 200,000/s",
            )
        )
        rows.append(
            (
                "  peak RSS, buffered",
                f"{r['peak_rss_mb_buffered']} MB ({_n(r['readings'])} readings)",
                "< 80 MB",
            )
        )
        rows.append(
            (
                "  lost (per reading; old count)",
                f"{r['count']['lost']} ({r['lost_by_old_count']})",
                "0",
            )
        )
    r = results.get("kill_soak")
    if r is not None:
        rows.append(("kill -9 soak", f"{r['cycles']} cycles, {_n(r['readings'])} readings", ""))
        rows.append(("  lost", str(r["lost"]), "0"))
        rows.append(
            (
                "  stored twice (buffer rows; TSDB)",
                f"{r['stored_twice_in_buffer']}; {r['listed_twice_by_tsdb']}",
                "0; 0",
            )
        )
        rows.append(("  seqs spent on events", str(r["seqs_not_readings"]), ""))
    return rows


def table(results: dict[str, Any]) -> str:
    """The results as an aligned three-column table, with the machine under it."""
    rows = _rows(results)
    width = max((len(r[0]) for r in rows), default=10)
    value_w = max((len(r[1]) for r in rows), default=10)
    lines = [f"{'metric'.ljust(width)}  {'measured'.ljust(value_w)}  target"]
    lines += [f"{a.ljust(width)}  {b.ljust(value_w)}  {c}" for a, b, c in rows]
    m = results["machine"]
    lines.append(
        f"\n{m['cpus']} cores, Python {m['python']}, {m['platform']}, "
        f"load {m['load_avg_1m_at_start']} at start{' (--quick)' if results['quick'] else ''}"
    )
    return "\n".join(lines)
