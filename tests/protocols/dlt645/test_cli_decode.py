"""``metergw decode``: JSON lines per event and the exit codes 0, 1 and 2."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.cli import main

REPLY = "68 01 00 00 00 00 00 68 91 08 33 33 34 33 AB 89 67 45 17 16"
BROADCAST = "68 99 99 99 99 99 99 68 08 06 63 53 43 56 44 59 60 16"
READ_1997 = "68 03 00 00 00 00 00 68 01 02 44 E9 03 16"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["decode", *args])
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    return code, lines, captured.err


def test_reply_decodes_to_json_with_exact_value(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(capsys, REPLY)
    assert code == 0
    assert err == ""
    (line,) = lines
    assert line["event"] == "frame"
    assert line["address"] == "000000000001"
    assert line["control"] == "91"
    assert line["direction"] == "reply"
    assert line["function"] == "READ_DATA"
    assert line["abnormal"] is False
    assert line["follow_up"] is False
    assert line["di"] == "00010000"
    assert line["values"] == [
        {"di": "00010000", "key": "energy_import_total_kwh", "value": "123456.78", "unit": "kWh"}
    ]


def test_spaces_optional_and_arguments_joined(capsys: pytest.CaptureFixture[str]) -> None:
    compact = REPLY.replace(" ", "")
    code, lines, _ = run(capsys, "FEFE", compact[:10], compact[10:], "0102")
    assert code == 0
    assert [line["event"] for line in lines] == ["frame", "discarded"]
    assert lines[0]["values"][0]["value"] == "123456.78"
    assert lines[1] == {
        "event": "discarded",
        "reason": "garbage without start byte",
        "length": 2,
        "data": "01 02",
    }


def test_noise_and_bad_checksum_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    bad = REPLY[:-5] + "18 16"
    code, lines, _ = run(capsys, "55 " + bad + " " + REPLY)
    assert code == 0
    assert [(line["event"], line.get("reason")) for line in lines] == [
        ("discarded", "garbage before start byte"),
        ("discarded", "bad checksum"),
        ("frame", None),
    ]
    assert lines[1]["data"] == bad


def test_only_garbage_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(capsys, "01 02 03 68 01")
    assert code == 1
    assert [line["reason"] for line in lines] == ["garbage before start byte", "truncated frame"]


def test_bad_hex_exits_2_naming_the_argument(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, err = run(capsys, REPLY, "68 0G")
    assert code == 2
    assert lines == []
    assert "argument 2" in err
    assert "'68 0G'" in err


def test_odd_digit_count_is_bad_hex(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "681")
    assert code == 2
    assert "argument 1 ('681')" in err


def test_function_code_picks_the_variant(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(capsys, READ_1997)
    assert code == 0
    assert lines[0]["variant"] == "dlt645-1997"
    assert lines[0]["di"] == "B611"
    assert lines[0]["key"] == "voltage_l1_v"


def test_variant_option_for_ambiguous_function(capsys: pytest.CaptureFixture[str]) -> None:
    _, default, _ = run(capsys, BROADCAST)
    assert default[0]["variant"] == "dlt645-2007"
    assert default[0]["time"] == "2026-11-23T10:20:30"
    _, chosen, _ = run(capsys, "--variant", "dlt645-1997", BROADCAST)
    assert chosen[0]["variant"] == "dlt645-1997"
    assert chosen[0]["time"] == "2026-11-23T10:20:30"


def test_abnormal_reply_names_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, _ = run(capsys, "68 12 90 78 56 34 12 68 D1 01 35 8D 16")
    assert code == 0
    assert lines[0]["abnormal"] is True
    assert lines[0]["error_flags"] == ["NO_DATA"]


def test_malformed_payload_is_reported_in_the_frame_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A reply to 00010000 with a non-BCD payload byte (0x7A after the offset).
    from protocols.dlt645 import read_reply

    wire = read_reply("000000000001", 0x00010000, bytes.fromhex("7A563412")).hex()
    code, lines, _ = run(capsys, wire)
    assert code == 0
    assert "not BCD" in lines[0]["error"]
    assert "00010000" in lines[0]["error"]
