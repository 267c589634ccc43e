"""A minimal runner of the store-and-forward path: buffer, ingest, forwarders.

A bench harness, not part of the daemon: ``python bench/_runner.py -c FILE``
runs it as its own process, so tests and benchmarks can kill it (``kill -9``)
mid-flight. The daemon (:mod:`gateway.daemon`, ``metergw run``) is the real
entry point and wires the same parts together with polling, status and the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from gateway.buffer import Buffer, BufferError, JobStore
from gateway.config import Config, ConfigError, load_config
from gateway.forward.forwarder import Forwarder
from gateway.forward.registry import build_sinks
from gateway.ingest import ConcentratorIngest
from gateway.logs import configure
from gateway.metrics import Metrics
from gateway.runtime import tune_gc, tune_malloc
from gateway.status import RecentEvents, Tap
from gateway.validate import Validator
from gateway.writepath import WritePath


async def run_pipeline(
    config: Config, metrics: Metrics | None = None, *, validate: bool = False
) -> None:
    """Open the buffer, start ingest and one forwarder per sink; run until cancelled.

    With ``validate`` the ingest's write jobs take the daemon's write path
    (validation, the buffer, the status tap as a commit listener); the process
    entry point always does, so that what is measured is what the daemon does.
    """
    metrics = metrics or Metrics()
    sinks = build_sinks(config, metrics)
    async with await Buffer.open(config.buffer_path(), config.buffer, metrics) as buf:
        writes: WritePath | None = None
        if validate:
            writes = WritePath(buf, Validator(config.validation), (Tap(RecentEvents()),))
            writes.validator.restore(await buf.references())
        store: JobStore = writes or buf
        try:
            async with asyncio.TaskGroup() as tg:
                for sink in sinks:
                    tg.create_task(Forwarder(buf, sink, metrics).run(), name=f"fw-{sink.name}")
                if config.ingest is not None:
                    ingest = ConcentratorIngest(
                        config.ingest, store, metrics, gateway_name=config.gateway.name
                    )
                    tg.create_task(ingest.run(), name="ingest")
        finally:
            if writes is not None:
                with contextlib.suppress(BufferError):
                    await writes.save()
            for sink in sinks:
                await sink.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline from a config file until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python bench/_runner.py")
    parser.add_argument("-c", "--config", required=True, help="the TOML config file")
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics on 127.0.0.1:PORT (for the bench)"
    )
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    lg = config.logging
    configure(level=lg.level, fmt=lg.format, components=lg.components, stream=sys.stderr)
    tune_malloc()  # before any thread starts
    tune_gc()
    metrics = Metrics()
    if args.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(args.metrics_port, addr="127.0.0.1", registry=metrics.registry)

    async def run() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            if task is not None:
                loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await run_pipeline(config, metrics, validate=True)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
