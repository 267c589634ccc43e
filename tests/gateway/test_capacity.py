"""check-config warns when a bus's schedule cannot fit its line."""

from __future__ import annotations

from gateway.config import check_config
from gateway.config.capacity import bus_load
from gateway.southbound.dlt645.line import transaction_seconds

ENERGY = '["energy_import_total_kwh", "energy_import_t1_kwh", "energy_import_t2_kwh"]'
INSTANT = '["voltage_l1_v", "current_l1_a", "power_active_total_kw", "frequency_hz"]'


def config(meters: int, interval: str, baud: int = 2400, protocol: str = "dlt645-2007") -> str:
    rows = "\n".join(
        f'[[buses.meters]]\naddress = "{n:012d}"\npoll = ["energy", "instant"]\n'
        for n in range(1, meters + 1)
    )
    return f"""
[gateway]
state_dir = "/tmp/metergw-capacity"
[sinks.local]
enabled = true
[poll_groups.energy]
interval = "15m"
quantities = {ENERGY}
[poll_groups.instant]
interval = "{interval}"
quantities = {INSTANT}
[[buses]]
name = "rs485-1"
protocol = "{protocol}"
serial = {{ port = "/dev/ttyUSB0", baud = {baud} }}
{rows}
"""


def warnings(text: str) -> list[str]:
    checked = check_config(text, file="gw.toml")
    assert checked.config is not None, checked.problems
    return [str(w) for w in checked.warnings]


def test_a_line_that_is_too_busy_is_reported_with_what_would_fit() -> None:
    # 30 meters at 2400 baud, instant values every 5 s: several DIs per meter at about
    # 0.3 s each is far more than the line can carry.
    [warning] = warnings(config(30, "5s"))
    assert warning.startswith("warning: gw.toml: buses[0]: bus 'rs485-1': its poll schedule")
    assert "poll group 'instant' alone needs" in warning
    assert "would fit" in warning


def test_a_schedule_that_fits_is_not_reported() -> None:
    assert warnings(config(30, "5m")) == []
    # The same meters at 9600 baud fit a one-minute interval.
    assert warnings(config(30, "1m", baud=9600)) == []


def test_the_estimate_follows_the_line_speed_and_the_number_of_transactions() -> None:
    slow = check_config(config(10, "10s"), file="gw.toml").config
    fast = check_config(config(10, "10s", baud=9600), file="gw.toml").config
    assert slow is not None
    assert fast is not None
    bus_slow, bus_fast = slow.buses[0], fast.buses[0]
    # 44 bytes of 11 bits at 2400 baud for one value, plus the reply delay: about the
    # 0.2-0.3 s a DL/T 645 read takes in the field.
    assert abs(transaction_seconds(bus_slow) - (44 * 11 / 2400 + 0.05)) < 1e-9
    assert 0.2 < transaction_seconds(bus_slow) < 0.3
    load_slow, groups_slow = bus_load(bus_slow, slow.poll_groups)
    load_fast, _ = bus_load(bus_fast, fast.poll_groups)
    assert load_slow > load_fast
    assert set(groups_slow) == {"energy", "instant"}
    assert groups_slow["instant"] > groups_slow["energy"]
