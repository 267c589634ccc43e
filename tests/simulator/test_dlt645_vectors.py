"""The protocol-notes.md test vectors, sent to simulated meters over TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import pytest
import pytest_asyncio

from protocols.dlt645 import (
    AddressReply,
    DataReply,
    Variant,
    decode_datetime,
    decode_payload,
    parse_reply,
    read_request,
)
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.simulator.conftest import BusClient, tcp_client

H = bytes.fromhex


@pytest_asyncio.fixture
async def two_meters(clock: SimClock) -> AsyncIterator[tuple[Dlt645Bus, BusClient]]:
    meters = [SimMeter("000000000001", 1, clock), SimMeter("123456789012", 2, clock)]
    async with Dlt645Bus(meters) as bus:
        client = await tcp_client(await bus.start_tcp())
        yield bus, client
        await client.close()


@pytest.mark.asyncio
async def test_read_energy_reply_is_byte_exact(two_meters: tuple[Dlt645Bus, BusClient]) -> None:
    bus, client = two_meters
    meter = bus.meters["000000000001"]
    meter.fix("energy_import_total_kwh", "123456.78")
    events, _ = await client.exchange(H("68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16"))
    raw = H("68 01 00 00 00 00 00 68 91 08 33 33 34 33 AB 89 67 45 17 16")
    assert client.decoder.feed(raw) == events  # the same frame, byte for byte
    assert meter.last_served[0x00010000] == [Decimal("123456.78")]


@pytest.mark.asyncio
async def test_voltage_and_negative_current_replies_are_byte_exact(
    two_meters: tuple[Dlt645Bus, BusClient],
) -> None:
    bus, client = two_meters
    meter = bus.meters["000000000001"]
    meter.fix("voltage_l1_v", "220.1")
    meter.fix("current_l1_a", "-1.234")
    for di, reply in (
        (0x02010100, "68 01 00 00 00 00 00 68 91 06 33 34 34 35 34 55 C1 16"),
        (0x02020100, "68 01 00 00 00 00 00 68 91 07 33 34 35 35 67 45 B3 99 16"),
    ):
        events, _ = await client.exchange(read_request("000000000001", di))
        assert events == client.decoder.feed(H(reply))


@pytest.mark.asyncio
async def test_unknown_di_gets_the_abnormal_reply_vector(
    two_meters: tuple[Dlt645Bus, BusClient],
) -> None:
    _, client = two_meters
    events, _ = await client.exchange(read_request("123456789012", 0x0F0F0F0F))
    assert events == client.decoder.feed(H("68 12 90 78 56 34 12 68 D1 01 35 8D 16"))


@pytest.mark.asyncio
async def test_vector_request_for_the_other_meter(two_meters: tuple[Dlt645Bus, BusClient]) -> None:
    bus, client = two_meters
    frame = await client.frame(H("68 12 90 78 56 34 12 68 11 04 33 33 34 33 68 16"))
    assert frame is not None
    assert frame.address == "123456789012"
    reply = parse_reply(frame, Variant.V2007)
    assert isinstance(reply, DataReply)
    value = decode_payload(0x00010000, reply.payload)[0].value
    assert value == bus.meters["123456789012"].last_served[0x00010000][0]


@pytest.mark.asyncio
async def test_wildcard_read_address_only_on_a_single_meter_bus(clock: SimClock) -> None:
    request = H("68 AA AA AA AA AA AA 68 13 00 DF 16")
    async with Dlt645Bus([SimMeter("000000000007", 1, clock)]) as single:
        client = await tcp_client(await single.start_tcp())
        frame = await client.frame(request)
        assert frame is not None
        assert parse_reply(frame, Variant.V2007) == AddressReply("000000000007")
        await client.close()
    meters = [SimMeter("000000000007", 1, clock), SimMeter("000000000008", 2, clock)]
    async with Dlt645Bus(meters) as multi:
        client = await tcp_client(await multi.start_tcp())
        assert await client.frame(request, within=0.3) is None
        assert multi.requests_seen == 1
        await client.close()


@pytest.mark.asyncio
async def test_broadcast_time_vector_sets_every_clock(
    two_meters: tuple[Dlt645Bus, BusClient],
) -> None:
    bus, client = two_meters
    events, _ = await client.exchange(
        H("68 99 99 99 99 99 99 68 08 06 63 53 43 56 44 59 60 16"), within=0.3
    )
    assert events == []  # broadcasts get no reply
    for meter in bus.meters.values():
        assert abs((meter.meter_time() - datetime(2026, 11, 23, 10, 20, 30)).total_seconds()) < 1
    frame = await client.frame(read_request("000000000001", 0x04000102))
    assert frame is not None
    reply = parse_reply(frame, Variant.V2007)
    assert isinstance(reply, DataReply)
    shown = decode_datetime(0x04000102, reply.payload)
    assert (shown.hour, shown.minute) == (10, 20)


@pytest.mark.asyncio
async def test_dlt645_1997_vector(clock: SimClock) -> None:
    meter = SimMeter("000000000003", 3, clock, protocol="dlt645-1997")
    meter.fix("voltage_l1_v", "221")
    async with Dlt645Bus([meter], variant="dlt645-1997", baud=1200) as bus:
        client = await tcp_client(await bus.start_tcp())
        frame = await client.frame(H("68 03 00 00 00 00 00 68 01 02 44 E9 03 16"))
        assert frame is not None
        assert frame.control == 0x81
        reply = parse_reply(frame, Variant.V1997)
        assert isinstance(reply, DataReply)
        assert reply.di == 0xB611
        assert decode_payload(0xB611, reply.payload, Variant.V1997)[0].value == 221
        await client.close()
