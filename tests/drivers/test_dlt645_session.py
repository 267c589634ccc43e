"""DL/T 645 session over real ptys and TCP, the simulator as the meters."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import pytest_asyncio

from drivers.dlt645 import Dlt645Session
from drivers.errors import DeviceError, LinkError, Timeout
from drivers.transport import SerialTransport, TcpTransport
from protocols.dlt645 import ErrorFlags, Variant, decode_load_profile, load_profile_request_extra
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.servers import free_port

A1, A2, A3 = "000000000001", "000000000002", "123456789012"


async def first_link_error(s: Dlt645Session, tries: int = 20) -> LinkError:
    """Read until the loss of the link shows (on the next use or the one after)."""
    for _ in range(tries):
        try:
            await s.read(A1, 0x00010000)
        except LinkError as exc:
            return exc
    raise AssertionError("the link loss never showed")


async def read_once_back(s: Dlt645Session, what: str, within: float = 3.0) -> None:
    """Read until the link is back (the session reopens it on use)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            await s.read(A1, 0x00010000)
            return
        except LinkError:
            assert asyncio.get_running_loop().time() < deadline, what
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Dlt645Bus]:
    clock = SimClock(speed=0)  # frozen: values are stable between reads
    bus = Dlt645Bus([SimMeter(a, seed=i, clock=clock) for i, a in enumerate((A1, A2, A3))])
    yield bus
    await bus.stop()


@pytest_asyncio.fixture
async def session(sim: Dlt645Bus) -> AsyncIterator[Dlt645Session]:
    path = await sim.start_pty()
    s = Dlt645Session(SerialTransport(path, baud=2400, parity="E"), timeout=0.2, retries=0)
    yield s
    await s.transport.close()


@pytest.mark.asyncio
async def test_block_read_equals_what_the_meter_sent(
    sim: Dlt645Bus, session: Dlt645Session
) -> None:
    values = await session.read_values(A3, 0x0001FF00)
    meter = sim.meters[A3]
    assert [v.value for v in values] == meter.last_served[0x0001FF00]
    assert [v.key for v in values][:2] == ["energy_import_total_kwh", "energy_import_t1_kwh"]
    assert values[0].value == meter.value("energy_import_total_kwh")
    volts = await session.read_values(A1, 0x0201FF00)
    assert [v.value for v in volts] == sim.meters[A1].last_served[0x0201FF00]


@pytest.mark.asyncio
async def test_follow_up_frames_are_joined(sim: Dlt645Bus, session: Dlt645Session) -> None:
    meter = sim.meters[A1]
    # Twelve hours back: 40 intervals of 15 min are always in the past, whatever
    # the time of day (the start of the meter's day was not, just after midnight).
    start = (meter.meter_time() - timedelta(hours=12)).replace(minute=0, second=0, microsecond=0)
    before = session.transactions
    payload = await session.read(A1, 0x06000001, extra=load_profile_request_extra(40, start))
    records = decode_load_profile(payload)
    assert len(records) == len(meter.load_profile(start, 40)) > 16
    assert session.transactions - before >= 3  # one read and at least two follow-ups
    assert [r.start for r in records] == [at for at, _ in meter.load_profile(start, 40)]


@pytest.mark.asyncio
async def test_error_reply_is_a_device_error_with_flags(session: Dlt645Session) -> None:
    with pytest.raises(DeviceError, match=f"meter {A1}") as info:
        await session.read(A1, 0x05060100 + 62)  # older than the meter keeps
    assert info.value.code & ErrorFlags.NO_DATA


@pytest.mark.asyncio
async def test_bad_checksum_and_wrong_address_are_counted_and_discarded(
    sim: Dlt645Bus, session: Dlt645Session
) -> None:
    sim.meters[A1].set_fault("bad_checksum")
    with pytest.raises(Timeout, match=A1):
        await session.read(A1, 0x00010000)
    assert session.discarded["bad checksum"] >= 1
    sim.meters[A2].set_fault("wrong_address")
    with pytest.raises(Timeout, match=A2):
        await session.read(A2, 0x00010000)
    assert session.discarded["wrong address"] == 1
    sim.meters[A3].set_fault("garbage", length=12)
    values = await session.read_values(A3, 0x00010000)  # noise before the reply is skipped
    assert values[0].value == sim.meters[A3].last_served[0x00010000][0]
    assert sum(session.discarded.values()) >= 3


@pytest.mark.asyncio
async def test_retries_resend_the_request(sim: Dlt645Bus, session: Dlt645Session) -> None:
    sim.meters[A1].set_fault("no_answer")
    session.retries = 2
    seen = sim.requests_seen
    with pytest.raises(Timeout, match="3 attempts"):
        await session.read(A1, 0x00010000)
    assert sim.requests_seen - seen == 3


@pytest.mark.asyncio
async def test_read_address_with_one_meter_and_dlt645_1997() -> None:
    clock = SimClock(speed=0)
    async with Dlt645Bus([SimMeter(A3, seed=9, clock=clock)]) as one:
        s = Dlt645Session(SerialTransport(await one.start_pty()), timeout=0.3, retries=0)
        assert await s.read_address() == A3
        await s.transport.close()
    meter = SimMeter("000000000003", seed=2, clock=clock, protocol="dlt645-1997")
    async with Dlt645Bus([meter], variant="dlt645-1997", baud=1200) as old:
        port = await old.start_tcp("127.0.0.1", 0)
        s = Dlt645Session(TcpTransport("127.0.0.1", port), Variant.V1997, timeout=0.3)
        volts = await s.read_values("000000000003", 0xB611)
        assert volts[0].value == meter.last_served[0xB611][0]
        assert volts[0].key == "voltage_l1_v"
        await s.transport.close()


@pytest.mark.asyncio
async def test_unplugged_adapter_is_reopened_at_the_same_path(tmp_path: Path) -> None:
    link = tmp_path / "ttyUSB-rs485"
    meter = SimMeter(A1, seed=1, clock=SimClock(speed=0))
    first = Dlt645Bus([meter])
    await first.start_pty(link)
    transport = SerialTransport(str(link), reopen_backoff=0.05, reopen_backoff_max=0.2)
    s = Dlt645Session(transport, timeout=0.2, retries=0)
    await s.read(A1, 0x00010000)
    await first.stop()  # the adapter disappears
    assert str(link) in str(await first_link_error(s))
    second = Dlt645Bus([meter])  # ... and comes back under the same name
    await second.start_pty(link)
    await read_once_back(s, "port never reopened")
    assert transport.opens >= 2
    await transport.close()
    await second.stop()


@pytest.mark.asyncio
async def test_missing_port_and_refused_tcp_are_link_errors_naming_them(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-port")
    s = Dlt645Session(SerialTransport(missing), timeout=0.1)
    with pytest.raises(LinkError, match=missing):
        await s.read(A1, 0x00010000)
    port = free_port()
    t = Dlt645Session(TcpTransport("127.0.0.1", port, connect_timeout=0.5), timeout=0.1)
    with pytest.raises(LinkError, match=f"127.0.0.1:{port}"):
        await t.read(A1, 0x00010000)


@pytest.mark.asyncio
async def test_tcp_dtu_reconnects_after_the_server_restarts(sim: Dlt645Bus) -> None:
    port = await sim.start_tcp("127.0.0.1", 0)
    transport = TcpTransport("127.0.0.1", port, reopen_backoff=0.05)
    s = Dlt645Session(transport, timeout=0.3, retries=0)
    await s.read(A1, 0x00010000)
    await sim.stop()
    assert f"127.0.0.1:{port}" in str(await first_link_error(s, 5))
    await sim.start_tcp("127.0.0.1", port)
    await read_once_back(s, "never reconnected")
    assert transport.opens == 2
    await transport.close()


@pytest.mark.asyncio
async def test_a_late_reply_to_an_earlier_request_is_discarded(
    sim: Dlt645Bus, session: Dlt645Session
) -> None:
    meter = sim.meters[A1]
    meter.set_fault("slow", delay=0.3)
    with pytest.raises(Timeout):
        await session.read(A1, 0x00010000)  # its reply comes while we wait for the next
    session.timeout = 0.8
    volts = await session.read_values(A1, 0x02010100)
    assert volts[0].key == "voltage_l1_v"
    assert volts[0].value == meter.last_served[0x02010100][0]
    assert session.discarded["unexpected data identifier"] == 1


@pytest.mark.asyncio
async def test_a_line_of_pure_noise_never_raises_anything_but_timeouts() -> None:
    """A DTU that answers every request with random bytes (and fragments of frames)."""
    rng = random.Random(7)

    async def noisy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
            writer.write(noise + data[: rng.randrange(len(data))])  # echo a broken request

    server = await asyncio.start_server(noisy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = Dlt645Session(TcpTransport("127.0.0.1", port), timeout=0.05, retries=0)
    try:
        for _ in range(15):
            with pytest.raises(Timeout):
                await s.read(A1, 0x00010000)
        assert sum(s.discarded.values()) >= 15
    finally:
        await s.transport.close()
        server.close()
        await server.wait_closed()


@pytest.mark.asyncio
async def test_a_long_reply_is_waited_for_as_long_as_the_line_needs_to_carry_it() -> None:
    # 2400 baud with the line's timing: two load-profile records (81 bytes each) fill a frame
    # that takes about 0.75 s on the wire, more than the 0.5 s timeout sized for short replies.
    clock = SimClock(speed=0)
    meter = SimMeter(A1, seed=1, clock=clock)
    async with Dlt645Bus([meter], baud=2400, emulate_timing=True, turnaround=0.05) as bus:
        s = Dlt645Session(SerialTransport(await bus.start_pty(), baud=2400), timeout=0.5, retries=0)
        start = (meter.meter_time() - timedelta(hours=12)).replace(
            minute=0, second=0, microsecond=0
        )
        extra = load_profile_request_extra(2, start)
        try:
            with pytest.raises(Timeout, match="no reply to DI 06000001"):
                await s.read(A1, 0x06000001, extra=extra)
            payload = await s.read(A1, 0x06000001, extra=extra, long_reply=True)
        finally:
            await s.transport.close()
    assert [r.start for r in decode_load_profile(payload)] == [
        at for at, _ in meter.load_profile(start, 2)
    ]
