"""``metergw backfill`` without a running daemon: read the meter's records here.

The same backfill the daemon runs (:class:`gateway.scheduler.backfill.Backfill`),
through the same write path (validation, then the buffer, with the gap's ledger
row in each slice's transaction).
"""

from __future__ import annotations

import sys
from typing import Any

from gateway.cli.backfill import EXIT_FAILED, EXIT_OK, Progress, manual_gap, reader_for


async def backfill_alone(
    config_path: str, cfg: Any, bus: Any, meter: Any, start_ms: int, end_ms: int
) -> int:
    """Read ``meter``'s records for ``(start_ms, end_ms]`` into the buffer; an exit status."""
    from drivers.errors import DriverError
    from gateway.buffer import Buffer, BufferError, WriteJob
    from gateway.metrics import Metrics
    from gateway.model import rows_of
    from gateway.scheduler.backfill import Backfill
    from gateway.scheduler.recovery import check_clock
    from gateway.validate import Validator
    from gateway.writepath import WritePath

    try:
        buffer = await Buffer.open(cfg.buffer_path(), cfg.buffer, Metrics())
    except BufferError as exc:
        print(f"metergw backfill: {exc}", file=sys.stderr)
        return EXIT_FAILED
    reader, run = reader_for(config_path, cfg, bus, meter)
    progress: Progress | None = None
    try:
        validator = Validator(cfg.validation)
        validator.restore(await buffer.references())
        writes = WritePath(buffer, validator)
        try:
            await reader.open()
        except DriverError as exc:
            print(f"metergw backfill: {bus.name}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        # The meter's clock first: its records are found through the drift measured now.
        readings, events = await check_clock(
            reader, run, bus.name, interval=bus.clock_check_interval, drift_max=bus.clock_drift_max
        )
        await writes.submit(WriteJob(rows=rows_of(readings), events=events, origin="backfill"))
        record = manual_gap(reader, run, bus, start_ms, end_ms)
        job = Backfill(reader, run, bus.name, record)
        await job.submit(writes, job.opening())
        progress = Progress(record.id)
        while not job.done:
            await job.submit(writes, await job.step())
            progress.show(job.record.to_json())
        progress.close()
        progress = None
        rec = job.record
        if job.paused:
            print(
                f"metergw backfill: meter {meter.meter_id} on {bus.name} stopped answering "
                f"({rec.reason}); {rec.recovered} of {rec.expected} intervals recovered, the "
                "rest stays in the gap ledger for the daemon's next start",
                file=sys.stderr,
            )
            return EXIT_FAILED
        print(f"{rec.state.value}: {rec.reason}")
        return EXIT_OK
    finally:
        if progress is not None:
            progress.close()
        await reader.close()
        await buffer.close()
