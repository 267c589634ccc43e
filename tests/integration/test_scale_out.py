"""Three gateways on one shared subscription, one killed with kill -9 mid-stream.

Three ``metergw run`` processes, each with its own config, client id and
state dir, subscribe to ``$share/metergw/meters/v1/+/readings`` on one
Mosquitto and forward to one VictoriaMetrics. A concentrator stand-in
publishes numbered messages at a steady rate; once the victim has stored some
of its share it is killed (SIGKILL) and, after more messages have gone by,
started again with the same client id and state dir. Afterwards:

- every reading the broker acknowledged to the publisher is in VictoriaMetrics
  once: distinct (meter, quantity, ts) equals readings sent, and a repeated
  sample has the same value;
- each buffer stored only its share: the sets of messages the three buffers
  recorded as stored are disjoint, cover every message sent and none is empty;
- no ``network_gap`` was raised (each gateway sees only every third ``seq``).

What Mosquitto (2.0.11) does with a killed member's messages, and so what this
test may expect: a member of a shared subscription is picked in turn, whether
or not it is connected, as long as its persistent session exists. The messages
given to the killed member (those in flight, unacknowledged, and those that
arrive while it is away) stay in *its* session: Mosquitto never hands them to
another member, and sends them again when the same client id comes back. The
test therefore restarts the victim with the same client id and checks that it
stored messages published while it was dead. Were its session dropped
(``clean_session`` or ``persistent_client_expiration``), those messages would
be lost, acknowledged to the publisher: the MQTT spec lets a broker hand them
to another member then (a SHOULD), Mosquitto does not. docs/operations.md
("Past one box") says so for operators.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.ingest.decode import digest
from tests.gateway.ingest.payloads import batch, encode
from tests.integration.helpers import Publisher, prepare_session
from tests.servers import MosquittoServer, VictoriaMetricsServer, wait_until

ROOT = Path(__file__).resolve().parents[2]
GROUP_TOPIC = "$share/metergw/meters/v1/+/readings"
TOPIC = "meters/v1/c1/readings"
METERS, POINTS = 2, 4
RATE = 100.0
"""Messages per second: steady, well under what three gateways take on a busy machine."""
BEFORE_KILL = 20
"""Messages the victim stores before it is killed: the kill lands mid-stream."""
IN_FLIGHT = 30
"""Messages published while the victim is frozen just before the kill: the broker sends
it its share of them, so it dies with messages in flight (delivered, unacknowledged)."""
WHILE_DEAD = 120
AFTER_RESTART = 120
"""Messages published while the victim is away, and after it is started again."""
VICTIM = "b"

CONFIG = """\
[gateway]
name = "scale-{name}"
state_dir = "{state}"
shutdown_timeout = "10s"

[logging]
level = "warning"
format = "json"

[http]
port = 0

[buffer]
commit_interval = "20ms"

[ingest]
topics = ["{topic}"]
broker = {{ url = "{mqtt_url}", client_id = "{client_id}" }}

[sinks.influx]
url = "{vm_url}"
token = "t"
org = "o"
bucket = "b"
batch_size = 500
flush_interval = "50ms"
timeout = "5s"
"""


@dataclass
class Instance:
    """One ``metergw run`` process: its config, state dir and log survive restarts."""

    name: str
    workdir: Path
    mqtt_url: str
    vm_url: str
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def client_id(self) -> str:
        return f"metergw-scale-{self.name}"

    @property
    def buffer(self) -> Path:
        return self.workdir / "state" / "buffer.sqlite"

    @property
    def log(self) -> Path:
        return self.workdir / "gateway.log"

    @property
    def config(self) -> Path:
        return self.workdir / "gw.toml"

    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            CONFIG.format(
                name=self.name,
                state=self.workdir / "state",
                topic=GROUP_TOPIC,
                mqtt_url=self.mqtt_url,
                client_id=self.client_id,
                vm_url=self.vm_url,
            )
        )

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "-c", str(self.config)],
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def freeze(self) -> None:
        """SIGSTOP: the process stops reading; what the broker sends it stays in flight."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self) -> int | None:
        """SIGTERM and the exit status (None if it was not running)."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.proc = None

    def running(self) -> bool:
        """True while the process runs; fail the test with its log if it has exited."""
        if self.proc is None or self.proc.poll() is None:
            return self.proc is not None
        tail = self.log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"gateway {self.name} exited with {self.proc.returncode}:\n{tail}")

    def stored(self) -> set[bytes]:
        """Digests of the concentrator messages this buffer stored (its ``seen`` keys)."""
        if not self.buffer.exists():
            return set()
        with sqlite3.connect(self.buffer) as conn:
            try:
                rows = conn.execute("SELECT key FROM seen WHERE scope = 'c1'").fetchall()
            except sqlite3.OperationalError:  # the schema is not created yet
                return set()
        return {bytes(r[0]) for r in rows}

    def head_and_repeats(self) -> tuple[int, int]:
        """The buffer's newest row sequence and its persistent count of repeats."""
        with sqlite3.connect(self.buffer) as conn:
            heads = [
                conn.execute("SELECT max(seq) FROM readings").fetchone()[0],
                conn.execute("SELECT max(seq) FROM events").fetchone()[0],
                (conn.execute("SELECT value FROM meta WHERE name='head'").fetchone() or [None])[0],
            ]
            row = conn.execute("SELECT value FROM meta WHERE name='repeats'").fetchone()
        head = max(int(h) for h in [*heads, 0] if h is not None)
        return head, int(row[0]) if row else 0


class NumberedPublisher(threading.Thread):
    """Publishes messages numbered 1, 2, ... at a steady rate; keeps each one's digest.

    ``acked`` is how many the broker acknowledged (each publish waits for its PUBACK).
    """

    def __init__(self, broker: MosquittoServer, rate: float) -> None:
        super().__init__(daemon=True)
        self.pub = Publisher(broker.host, broker.port)
        self.rate = rate
        self.digests: dict[bytes, int] = {}
        self.acked = 0
        self.error: BaseException | None = None
        self.stop_flag = threading.Event()

    def run(self) -> None:
        try:
            seq = 0
            while not self.stop_flag.is_set():
                seq += 1
                payload = encode(batch(seq=seq, meters=METERS, points=POINTS, base=seq * METERS))
                self.pub.publish(TOPIC, payload)
                self.digests[digest(payload)] = seq
                self.acked = seq
                self.stop_flag.wait(1 / self.rate)
        except BaseException as exc:  # the test fails with it instead of waiting forever
            self.error = exc
        finally:
            self.pub.close()

    def sent_at_least(self, n: int) -> bool:
        if self.error is not None:
            raise self.error
        return self.acked >= n


def points(vm: VictoriaMetricsServer) -> dict[tuple[str, str, int], list[float]]:
    """(meter, quantity, ts) -> every sample VictoriaMetrics returns for it."""
    out: dict[tuple[str, str, int], list[float]] = {}
    for s in vm.export('{__name__="meter_value"}'):
        for ts, v in zip(s["timestamps"], s["values"], strict=True):
            out.setdefault((s["metric"]["meter"], s["metric"]["quantity"], ts), []).append(v)
    return out


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_shared_subscription_survives_kill_9_of_one_instance(
    tmp_path: Path, mosquitto: MosquittoServer, victoria_metrics: VictoriaMetricsServer
) -> None:
    gateways = {
        name: Instance(name, tmp_path / f"gw-{name}", mosquitto.url, victoria_metrics.url)
        for name in ("a", "b", "c")
    }
    victim = gateways[VICTIM]
    for gw in gateways.values():
        gw.write_config()
        # Each member's session exists before message one, so the broker shares every
        # message among all three, whether or not that member has connected yet.
        prepare_session(mosquitto.host, mosquitto.port, gw.client_id, GROUP_TOPIC)
    publisher = NumberedPublisher(mosquitto, RATE)
    try:
        for gw in gateways.values():
            gw.start()
        publisher.start()
        wait_until(
            lambda: victim.running() and len(victim.stored()) >= BEFORE_KILL,
            timeout=30,
            interval=0.05,
            what=f"gateway {VICTIM} to store {BEFORE_KILL} messages",
        )
        victim.freeze()
        frozen_at = publisher.acked
        wait_until(
            lambda: publisher.sent_at_least(frozen_at + IN_FLIGHT),
            timeout=30,
            what=f"{IN_FLIGHT} messages published while gateway {VICTIM} is frozen",
        )
        victim.kill()
        killed_at = publisher.acked
        wait_until(
            lambda: publisher.sent_at_least(killed_at + WHILE_DEAD),
            timeout=30,
            what=f"{WHILE_DEAD} messages published while gateway {VICTIM} is dead",
        )
        victim.start()
        restarted_at = publisher.acked
        wait_until(
            lambda: publisher.sent_at_least(restarted_at + AFTER_RESTART),
            timeout=30,
            what=f"{AFTER_RESTART} messages published after gateway {VICTIM} restarted",
        )
        publisher.stop_flag.set()
        publisher.join(timeout=30)
        assert publisher.error is None, publisher.error
        sent = publisher.acked
        expected = sent * METERS * POINTS
        wait_until(
            lambda: (
                all(gw.running() for gw in gateways.values())
                and len(points(victoria_metrics)) >= expected
            ),
            timeout=45,
            interval=0.5,
            what=f"{expected} points in VictoriaMetrics",
        )
    finally:
        publisher.stop_flag.set()
        statuses = {name: gw.stop() for name, gw in gateways.items()}
    for name, status in statuses.items():
        # 0 after a clean shutdown; -SIGTERM if it came while Python was still starting.
        assert status in (0, -signal.SIGTERM), (
            f"gateway {name}: {status}\n" + (gateways[name].log.read_text(errors="replace")[-3000:])
        )

    # Every acknowledged reading in the TSDB exactly once.
    seen = points(victoria_metrics)
    assert len(seen) == expected, f"{len(seen)} distinct points, expected {expected}"
    assert all(len(set(values)) == 1 for values in seen.values())
    meters = {m for m, _, _ in seen}
    assert meters == {f"dlt645-2007:{a:012d}" for a in range(METERS, (sent + 1) * METERS)}

    # No seq gap reported (each member sees only its share of the numbers); the only
    # events are repeats recognised by their content.
    kinds = {
        s["metric"]["kind"] for s in victoria_metrics.export('{__name__="metergw_event_value"}')
    }
    assert kinds <= {"message_repeated"}, kinds

    # Each buffer stored only its share, and the messages really were split.
    shares = {name: gw.stored() for name, gw in gateways.items()}
    assert set().union(*shares.values()) <= set(publisher.digests), "a message nobody sent"
    seqs = {name: {publisher.digests[d] for d in share} for name, share in shares.items()}
    assert sum(len(s) for s in seqs.values()) == sent, {n: len(s) for n, s in seqs.items()}
    assert set().union(*seqs.values()) == set(range(1, sent + 1))
    assert all(seqs.values()), {n: len(s) for n, s in seqs.items()}
    # What the victim had in flight when it was killed, and what Mosquitto kept handing
    # it while it was dead (a member's turn comes whether or not it is connected), was
    # delivered to it once it came back under the same client id; none of it went to the
    # others (the shares are disjoint).
    assert seqs[VICTIM] & set(range(frozen_at + 1, killed_at + 1))
    assert seqs[VICTIM] & set(range(killed_at + 1, restarted_at + 1))
    # Each buffer's rows are its share's readings plus one event per repeat (a message
    # sent again to the restarted victim after it had stored it, before its PUBACK).
    for name, gw in gateways.items():
        head, repeats = gw.head_and_repeats()
        rows = len(seqs[name]) * METERS * POINTS + repeats
        assert head == rows, f"gateway {name}: {head} buffer rows, its share makes {rows}"
        if name != VICTIM:
            assert repeats == 0, name
