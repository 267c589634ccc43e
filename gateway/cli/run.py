"""``metergw run -c FILE``: run the gateway until SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

HELP = "run the gateway daemon (stops cleanly on SIGTERM/SIGINT, reloads its config on SIGHUP)"

EXIT_CONFIG = 2
EXIT_FAILURE = 1
_FORCE_GRACE_S = 2.0
"""Past ``shutdown_timeout`` plus this, a hung shutdown is cut short."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="the TOML config file")


def _force_exit(reason: str) -> None:
    # Whatever was committed is safe in the SQLite WAL; leaving now loses nothing.
    sys.stderr.write(f"metergw: {reason}; exiting without finishing the shutdown\n")
    sys.stderr.flush()
    os._exit(EXIT_FAILURE)


def run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway import logs
    from gateway.config import check_config_file
    from gateway.daemon import Daemon, DaemonError
    from gateway.runtime import tune_gc, tune_malloc

    checked = check_config_file(args.config)
    cfg = checked.config
    if cfg is None:
        for problem in checked.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(cfg.logging.level, cfg.logging.format, cfg.logging.components)
    tune_malloc()  # before any thread starts
    tune_gc()

    log = logs.get_logger("daemon")
    for warning in checked.warnings:
        log.warning("config_warning", where=warning.location, message=warning.message)

    async def main() -> int:
        daemon = Daemon(cfg, config_path=args.config)
        loop = asyncio.get_running_loop()
        timeout = cfg.gateway.shutdown_timeout

        def on_signal(sig: signal.Signals) -> None:
            if daemon.stop_requested:
                _force_exit(f"second {sig.name}")
            log.info("signal_received", signal=sig.name)
            daemon.request_stop()
            watchdog = threading.Timer(
                timeout + _FORCE_GRACE_S,
                _force_exit,
                args=(f"shutdown took longer than {timeout:g} s",),
            )
            watchdog.daemon = True
            watchdog.start()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        # SIGHUP (systemctl reload): check the file again, apply what changed. Unhandled,
        # it would end the daemon silently, with an exit systemd takes for a clean stop.
        loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
        try:
            await daemon.run()
        except DaemonError as exc:
            log.error("daemon_cannot_start", error=str(exc))
            print(f"metergw run: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        except Exception:
            log.exception("daemon_failed")
            return EXIT_FAILURE
        return 0 if daemon.clean else EXIT_FAILURE

    return asyncio.run(main())
