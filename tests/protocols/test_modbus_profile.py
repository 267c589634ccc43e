"""Modbus register-map profiles: loading, checking, encoding and decoding."""

from __future__ import annotations

import struct
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.modbus_profile import (
    BUILTIN_PROFILE_DIR,
    ProfileError,
    RegisterSpec,
    RegisterType,
    WordOrder,
    decode_value,
    encode_value,
    load_profile,
    parse_profile,
    resolve_profile,
)

METERS_DOC = Path(__file__).resolve().parents[2] / "docs" / "meters.md"


def spec(rtype: str, order: str = "big", scale: str = "1") -> RegisterSpec:
    return RegisterSpec(
        "energy_import_total_kwh",
        0,
        3,
        RegisterType(rtype),
        WordOrder(order),
        Decimal(scale),
        "kWh",
    )


def test_builtin_profiles() -> None:
    sdm = resolve_profile("sdm630")
    assert sdm.verified
    assert sdm.by_key("voltage_l1_v").address == 0x0000
    assert sdm.by_key("energy_import_total_kwh").address == 0x0048
    assert sdm.by_key("frequency_hz").address == 0x0046
    assert {s.function for s in sdm.registers} == {4}
    assert {s.type for s in sdm.registers} == {RegisterType.FLOAT32}
    dtsu = resolve_profile("dtsu666")
    assert dtsu.verified is False
    assert {s.function for s in dtsu.registers} == {3}
    # CHINT's map: ImpEp at 0x101E, ExpEp at 0x1028 (not 0x401E).
    assert dtsu.by_key("energy_import_total_kwh").address == 0x101E
    assert dtsu.by_key("energy_export_total_kwh").address == 0x1028
    assert dtsu.by_key("voltage_l1_v").scale == Decimal("0.1")
    assert BUILTIN_PROFILE_DIR.name == "profiles"


@pytest.mark.parametrize("path", sorted(BUILTIN_PROFILE_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_profile_names_its_document_and_what_is_unchecked(path: Path) -> None:
    profile = load_profile(path)
    text = path.read_text(encoding="utf-8")
    assert profile.name == path.stem
    assert profile.vendor
    assert profile.model
    assert len(profile.document) > 20
    header = text.split("[profile]")[0]
    assert "# Document: " in header  # the file's own header names it as well
    # An unverified profile says so, and says what is unchecked, in its header.
    assert ("NOT verified" in text) is (not profile.verified)
    assert ("Verified:" in text) is profile.verified
    # docs/meters.md lists it, with the same document and verified flag.
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in METERS_DOC.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"| `{profile.name}` |")
    ]
    assert len(rows) == 1, f"docs/meters.md has no row for {profile.name}"
    assert rows[0][3] == profile.document
    assert rows[0][4] == ("**yes**" if profile.verified else "no")


def test_known_register_images() -> None:
    # SDM630 sends 229.8 V as the big-endian float32 0x4365CCCD.
    assert encode_value(spec("float32"), Decimal("229.8")) == [0x4365, 0xCCCD]
    assert decode_value(spec("float32"), [0x4365, 0xCCCD]) == Decimal("229.8")
    assert encode_value(spec("float32", "little"), Decimal("229.8")) == [0xCCCD, 0x4365]
    assert encode_value(spec("int16"), Decimal(-2)) == [0xFFFE]
    assert encode_value(spec("uint32", scale="0.01"), Decimal("123456.78")) == [0x00BC, 0x614E]
    assert decode_value(spec("uint32", "little", "0.01"), [0x614E, 0x00BC]) == Decimal("123456.78")
    assert decode_value(spec("float64"), [0x4040, 0, 0, 0]) == Decimal("32.0")
    # Schneider iEM3000: INT64 Wh; ABB B2x: UINT64 in 0.01 kWh.
    assert encode_value(spec("int64", scale="0.001"), Decimal("12345.678")) == [0, 0, 0xBC, 0x614E]
    assert decode_value(spec("int64", scale="0.001"), [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE]) == Decimal(
        "-0.002"
    )
    assert decode_value(spec("uint64", scale="0.01"), [0, 0, 0x00BC, 0x614E]) == Decimal(
        "123456.78"
    )
    assert encode_value(spec("uint64", "little", "0.01"), Decimal("123456.78")) == [
        0x614E, 0x00BC, 0, 0
    ]  # fmt: skip
    with pytest.raises(ValueError, match="does not fit uint64"):
        encode_value(spec("uint64"), Decimal(-1))


@settings(max_examples=60, deadline=None)
@given(
    rtype=st.sampled_from(["int16", "uint16", "int32", "uint32", "int64", "uint64"]),
    order=st.sampled_from(["big", "little"]),
    raw=st.integers(-(2**63), 2**64 - 1),
)
def test_integer_round_trip(rtype: str, order: str, raw: int) -> None:
    s = spec(rtype, order, "0.001")
    fmt = {"int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q"}[
        rtype
    ]
    try:
        struct.pack(f">{fmt}", raw)
    except struct.error:
        with pytest.raises(ValueError, match="does not fit"):
            encode_value(s, Decimal(raw) / 1000)
        return
    value = Decimal(raw) / 1000
    registers = encode_value(s, value)
    assert len(registers) == s.count
    assert decode_value(s, registers) == value


@settings(max_examples=60, deadline=None)
@given(
    value=st.floats(allow_nan=False, allow_infinity=False, width=32),
    order=st.sampled_from(["big", "little"]),
    rtype=st.sampled_from(["float32", "float64"]),
)
def test_float_round_trip_is_shortest_decimal(value: float, order: str, rtype: str) -> None:
    s = spec(rtype, order)
    registers = encode_value(s, Decimal(repr(value)))
    decoded = decode_value(s, registers)
    assert encode_value(s, decoded) == registers  # the decimal maps back to the same bits
    if rtype == "float64":
        assert float(decoded) == value
    else:
        assert len(decoded.normalize().as_tuple().digits) <= 9


def test_decode_rejects_nan_and_wrong_count() -> None:
    with pytest.raises(ValueError, match="energy_import_total_kwh"):
        decode_value(spec("float32"), [0x7FC0, 0])
    with pytest.raises(ValueError, match="expected 2 registers"):
        decode_value(spec("uint32"), [1])


GOOD = """
[profile]
name = "x"
function = 3
type = "uint16"

[[registers]]
key = "voltage_l1_v"
address = 10
scale = 0.1
"""


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=3\ntype='float16'",
         "registers[0].type: unknown type 'float16'"),
        ("[[registers]]\nkey='volts'\naddress=1\nfunction=3\ntype='uint16'",
         "registers[0].key: unknown quantity key 'volts'"),
        ("[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=6\ntype='uint16'",
         "registers[0].function: must be 3"),
        ("[[registers]]\nkey='voltage_l1_v'\naddress=70000\nfunction=3\ntype='uint16'",
         "registers[0].address: must be an integer"),
        ("[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=3\ntype='uint16'\nunit='kV'",
         "registers[0].unit: voltage_l1_v is in 'V'"),
        ("[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=3\ntype='uint16'\nscale=0",
         "registers[0].scale: must be a finite non-zero"),
        ("[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=3\ntype='uint32'\n"
         "[[registers]]\nkey='voltage_l2_v'\naddress=2\nfunction=3\ntype='uint16'",
         "registers[1].address: voltage_l2_v at 2 overlaps voltage_l1_v"),
        ("[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=3\ntype='uint16'\n"
         "[[registers]]\nkey='voltage_l1_v'\naddress=5\nfunction=3\ntype='uint16'",
         "registers[1].key: 'voltage_l1_v' already defined"),
        ("[profile]\ncolour='red'\n[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=3\n"
         "type='uint16'", "profile.colour: unknown key"),
        ("[profile]\nname='x'", "registers: at least one"),
        ("[profile]\ndocument=3\n[[registers]]\nkey='voltage_l1_v'\naddress=1\nfunction=3\n"
         "type='uint16'", "profile.document: must be a string"),
        ("[[registers]\n", "not valid TOML"),
    ],
)  # fmt: skip
def test_errors_name_file_and_key(text: str, where: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(text, "meters/x.toml", default_name="x")
    assert str(info.value).startswith("meters/x.toml: ")
    assert where in str(info.value)


def test_resolve_prefers_callers_dirs_then_builtin(tmp_path: Path) -> None:
    (tmp_path / "sdm630.toml").write_text(GOOD.replace('name = "x"', 'name = "local"'))
    assert resolve_profile("sdm630", [tmp_path]).name == "local"
    assert resolve_profile("sdm630", [tmp_path / "nowhere"]).name == "sdm630"
    assert load_profile(tmp_path / "sdm630.toml").by_key("voltage_l1_v").scale == Decimal("0.1")
    assert resolve_profile(str(tmp_path / "sdm630.toml")).name == "local"
    with pytest.raises(ProfileError, match=r"profile 'acme' not found .*looked in"):
        resolve_profile("acme", [tmp_path])
    with pytest.raises(ProfileError, match="cannot read profile"):
        load_profile(tmp_path / "missing.toml")
    with pytest.raises(KeyError, match="no register for 'frequency_hz'"):
        load_profile(tmp_path / "sdm630.toml").by_key("frequency_hz")
