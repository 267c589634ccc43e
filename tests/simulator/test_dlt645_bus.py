"""A DL/T 645 bus over a pty and over TCP: addressing, long replies, records, faults, timing."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest

from protocols.dlt645 import (
    BAD_CHECKSUM,
    DataReply,
    Discarded,
    ErrorFlags,
    ErrorReply,
    Frame,
    Variant,
    decode_datetime,
    decode_load_profile,
    decode_payload,
    encode_load_record,
    freeze_energy_di,
    freeze_time_di,
    load_profile_request_extra,
    parse_reply,
    read_followup_request,
    read_request,
)
from simulator import Dlt645Bus, SimClock, SimMeter
from tests.simulator.conftest import pty_client, tcp_client

ADDRS = ("000000000001", "000000000002", "000000000003")


def fleet(clock: SimClock) -> list[SimMeter]:
    return [SimMeter(a, seed=n, clock=clock) for n, a in enumerate(ADDRS)]


def data(frame: Frame | None) -> DataReply:
    assert frame is not None, "no reply"
    reply = parse_reply(frame, Variant.V2007)
    assert isinstance(reply, DataReply), reply
    return reply


@pytest.mark.asyncio
async def test_pty_bus_with_link_serves_each_address(clock: SimClock, tmp_path: Path) -> None:
    link = tmp_path / "dev" / "rs485-1"
    async with Dlt645Bus(fleet(clock)) as bus:
        path = await bus.start_pty(link)
        assert path == str(link)
        device = os.readlink(link)
        assert device.startswith("/dev/pts/")
        # A second simulator must not steal a link that is in use.
        async with Dlt645Bus(fleet(clock)) as other:
            with pytest.raises(FileExistsError, match="in use"):
                await other.start_pty(link)
        assert os.readlink(link) == device
        async with pty_client(path) as client:
            for address in ADDRS:
                frame = await client.frame(read_request(address, 0x0001FF00))
                values = decode_payload(0x0001FF00, data(frame).payload)
                assert frame is not None
                assert frame.address == address
                assert values[0].value == sum(v.value for v in values[1:])
            # Nobody has this address: silence, as on a real line.
            assert await client.frame(read_request("000000000099", 0x00010000), 0.3) is None
        assert bus.requests_seen == 4
    assert not link.exists()  # the link goes away with the bus


@pytest.mark.asyncio
async def test_long_load_profile_reply_uses_follow_up_frames(clock: SimClock) -> None:
    clock.advance(86_400)
    async with Dlt645Bus(fleet(clock)) as bus:
        client = await tcp_client(await bus.start_tcp())
        meter = bus.meters["000000000002"]
        start = meter.meter_time().replace(hour=0, minute=0, second=0, microsecond=0)
        start -= timedelta(hours=6)
        extra = load_profile_request_extra(40, start)
        first = data(await client.frame(read_request("000000000002", 0x06000001, extra=extra)))
        payload = first.payload
        more, seq = first.has_follow_up, 1
        assert more
        per_frame = [len(decode_load_profile(first.payload))]  # every frame: whole records
        while more:
            frame = await client.frame(read_followup_request("000000000002", 0x06000001, seq))
            reply = data(frame)
            assert reply.seq == seq
            payload += reply.payload
            per_frame.append(len(decode_load_profile(reply.payload)))
            more, seq = reply.has_follow_up, seq + 1
        records = decode_load_profile(payload)
        assert [r.start for r in records] == [start + timedelta(minutes=15 * k) for k in range(40)]
        # Records of blocks 1-4 are 81 bytes: two in each frame's 196 (195) bytes.
        assert len(encode_load_record(records[0])) == 81
        assert per_frame == [2] * 20
        expected = meter.energy_values(meter.local_to_sim(records[7].start))
        assert records[7].values["energy_import_total_kwh"] == expected["energy_import_total_kwh"]
        await client.close()


@pytest.mark.asyncio
async def test_frozen_reads_and_missing_records(clock: SimClock) -> None:
    clock.advance(3 * 86_400)
    async with Dlt645Bus(fleet(clock)) as bus:
        client = await tcp_client(await bus.start_tcp())
        a = "000000000001"
        when = decode_datetime(freeze_time_di(1), data(await client.frame(
            read_request(a, freeze_time_di(1)))).payload)  # fmt: skip
        assert (when.hour, when.minute) == (0, 0)
        energy = decode_payload(freeze_energy_di(1), data(await client.frame(
            read_request(a, freeze_energy_di(1)))).payload)  # fmt: skip
        assert [v.value for v in energy] == bus.meters[a].last_served[freeze_energy_di(1)]
        assert energy[0].value == sum(v.value for v in energy[1:])
        hourly = decode_payload(freeze_energy_di(2, hourly=True), data(await client.frame(
            read_request(a, freeze_energy_di(2, hourly=True)))).payload)  # fmt: skip
        assert hourly[0].value <= bus.meters[a].value("energy_import_total_kwh")
        # Day 30 is older than the 7 days the meter keeps: abnormal reply.
        frame = await client.frame(read_request(a, freeze_energy_di(30)))
        assert frame is not None
        assert parse_reply(frame, Variant.V2007) == ErrorReply(ErrorFlags.NO_DATA, 0x11)
        await client.close()


@pytest.mark.asyncio
async def test_faults_seen_from_the_client(clock: SimClock) -> None:
    async with Dlt645Bus(fleet(clock)) as bus:
        client = await tcp_client(await bus.start_tcp())
        a = "000000000003"
        meter = bus.meters[a]
        meter.set_fault("no_answer")
        assert await client.frame(read_request(a, 0x00010000), 0.3) is None
        meter.clear_faults()

        meter.set_fault("bad_checksum")
        events, _ = await client.exchange(read_request(a, 0x00010000), 0.3)
        assert [e.reason for e in events if isinstance(e, Discarded)] == [BAD_CHECKSUM]
        meter.clear_faults()

        meter.set_fault("wrong_address")
        frame = await client.frame(read_request(a, 0x00010000))
        assert frame is not None
        assert frame.address != a
        meter.clear_faults()

        meter.set_fault("garbage", length=12)
        events, _ = await client.exchange(read_request(a, 0x00010000))
        assert isinstance(events[0], Discarded)
        assert isinstance(events[-1], Frame)
        assert events[-1].address == a  # the reply survives the garbage
        meter.clear_faults()

        meter.set_fault("slow", delay=0.4)
        events, took = await client.exchange(read_request(a, 0x00010000), 2.0)
        assert took >= 0.4
        assert isinstance(events[-1], Frame)
        meter.clear_faults()

        before = data(await client.frame(read_request(a, 0x00010000)))
        meter.set_fault("spike", kwh=10_000)
        spiked = data(await client.frame(read_request(a, 0x00010000)))
        meter.clear_faults()
        meter.set_fault("counter_reset")
        reset = data(await client.frame(read_request(a, 0x00010000)))
        values = [decode_payload(0x00010000, r.payload)[0].value for r in (before, spiked, reset)]
        assert values[1] == values[0] + 10_000
        assert values[2] < values[0]  # the counter dropped: meter replaced

        bus.dead = True
        for address in ADDRS:
            assert await client.frame(read_request(address, 0x00010000), 0.2) is None
        bus.dead = False
        assert await client.frame(read_request(a, 0x00010000), 1.0) is not None
        await client.close()


@pytest.mark.asyncio
async def test_fault_expires_on_its_own(clock: SimClock) -> None:
    async with Dlt645Bus(fleet(clock)) as bus:
        client = await tcp_client(await bus.start_tcp())
        bus.set_fault("dead", duration=0.3)
        t0 = time.monotonic()
        while await client.frame(read_request("000000000001", 0x00010000), 0.1) is None:
            assert time.monotonic() - t0 < 2.0, "the bus never came back"
        assert time.monotonic() - t0 >= 0.25
        await client.close()


@pytest.mark.asyncio
async def test_baud_time_emulation(clock: SimClock) -> None:
    bus = Dlt645Bus(fleet(clock), baud=1200, emulate_timing=True, turnaround=0.05)
    async with bus, pty_client(await bus.start_pty()) as client:
        request = read_request("000000000001", 0x00010000)  # 16 bytes
        events, took = await client.exchange(request, 2.0)
        assert isinstance(events[-1], Frame)
        # 16 + 20 bytes at 11 bits each and 1200 baud, plus the 50 ms turnaround.
        expected = (16 + 20) * 11 / 1200 + 0.05
        assert expected - 0.01 <= took < expected + 0.25


@pytest.mark.asyncio
async def test_a_meter_without_load_profile_still_keeps_hourly_freezes(clock: SimClock) -> None:
    clock.advance(86_400)
    bare = SimMeter("000000000009", seed=9, clock=clock, load_profile=False)
    async with Dlt645Bus([bare]) as bus:
        client = await tcp_client(await bus.start_tcp())
        start = bare.meter_time().replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
        extra = load_profile_request_extra(4, start)
        reply = await client.frame(read_request(bare.address, 0x06000001, extra=extra))
        assert reply is not None
        refused = parse_reply(reply, Variant.V2007)
        assert isinstance(refused, ErrorReply)
        assert refused.flags & ErrorFlags.NO_DATA
        when = decode_datetime(
            freeze_time_di(3, hourly=True),
            data(
                await client.frame(read_request(bare.address, freeze_time_di(3, hourly=True)))
            ).payload,
        )
        assert when == start + timedelta(hours=1)  # n=1 is the current hour
        total = decode_payload(
            freeze_energy_di(3, hourly=True),
            data(
                await client.frame(read_request(bare.address, freeze_energy_di(3, hourly=True)))
            ).payload,
        )
        frozen = bare.freeze(3, hourly=True)
        assert frozen is not None
        assert [v.value for v in total] == [frozen[1]["energy_import_total_kwh"]]
        await client.close()


@pytest.mark.asyncio
async def test_a_single_phase_meter_sends_phases_2_and_3_as_not_measured(
    clock: SimClock,
) -> None:
    clock.advance(86_400)
    single = SimMeter("000000000008", seed=8, clock=clock, phases=1)
    async with Dlt645Bus([single]) as bus:
        client = await tcp_client(await bus.start_tcp())
        u1 = decode_payload(
            0x02010100, data(await client.frame(read_request(single.address, 0x02010100))).payload
        )
        assert [v.value for v in u1] == [single.value("voltage_l1_v")]
        refused = parse_reply(
            await client.frame(read_request(single.address, 0x02010200)), Variant.V2007
        )  # type: ignore[arg-type]
        assert isinstance(refused, ErrorReply)
        assert refused.flags & ErrorFlags.NO_DATA
        start = single.meter_time().replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        extra = load_profile_request_extra(2, start)
        reply = data(await client.frame(read_request(single.address, 0x06000001, extra=extra)))
        await client.close()
    # Phase 2 voltage: two bytes FFH right after phase 1's, in the first record's block 1.
    assert reply.payload[10:12] == b"\xff\xff"
    records = decode_load_profile(reply.payload)
    for record, (at, values) in zip(records, single.load_profile(start, 2), strict=True):
        assert record.start == at
        assert record.blocks == {1, 2, 3, 4}
        assert not [k for k in record.values if "_l2" in k or "_l3" in k]
        assert record.values["power_active_total_kw"] == record.values["power_active_l1_kw"]
        assert all(values[k] == v for k, v in record.values.items())
