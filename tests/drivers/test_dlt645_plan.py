"""Block DIs are used where they cover several wanted quantities."""

from __future__ import annotations

import pytest

from drivers.dlt645.plan import UnmappedKeys, plan_dis
from protocols.dlt645 import Variant


def test_energy_total_and_tariffs_use_the_block() -> None:
    keys = ["energy_import_total_kwh", "energy_import_t1_kwh", "energy_import_t2_kwh"]
    assert plan_dis(keys) == [0x0001FF00]


def test_three_voltages_use_the_block_and_single_keys_their_own_di() -> None:
    keys = ["voltage_l1_v", "voltage_l2_v", "voltage_l3_v", "frequency_hz"]
    assert plan_dis(keys) == [0x0201FF00, 0x02800002]


def test_one_key_of_a_family_reads_its_own_di() -> None:
    assert plan_dis(["energy_import_total_kwh", "voltage_l1_v"]) == [0x00010000, 0x02010100]


def test_1997_blocks() -> None:
    keys = ["energy_import_total_kwh", "energy_import_t1_kwh", "voltage_l1_v"]
    assert plan_dis(keys, Variant.V1997) == [0x901F, 0xB611]


def test_unmapped_keys_are_named() -> None:
    with pytest.raises(UnmappedKeys, match="frequency_hz"):
        plan_dis(["frequency_hz", "voltage_l1_v"], Variant.V1997)
