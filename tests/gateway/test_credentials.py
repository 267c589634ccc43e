"""Credentials and TLS settings in the config: where secrets come from, what is checked, and
that a password never shows in a message, a repr or check-config's output."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from gateway.cli import main
from gateway.config import Config, ConfigError, parse_config
from gateway.config.northbound import MqttBroker
from gateway.config.security import redact_url, split_url_credentials
from gateway.forward.influx import InfluxSinkConfig
from tests.certs import CertificateAuthority

SECRET = "s3cret-Pa55"


def config_text(broker: str, influx: str = 'token = "tok"', url: str = "http://h:8086") -> str:
    return f"""
[ingest]
broker = {{ {broker} }}
[sinks.influx]
url = "{url}"
org = "o"
bucket = "b"
{influx}
"""


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(text, file=str(tmp_path / "box.toml"), env=env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return [str(p).removeprefix(f"{tmp_path / 'box.toml'}: ") for p in info.value.problems]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://u:p@h:1883", ("mqtt://h:1883", "u", "p")),
        ("mqtts://u@h", ("mqtts://h", "u", None)),
        ("mqtt://u:p%40ss%3A@h/x?y#z", ("mqtt://h/x?y#z", "u", "p@ss:")),
        ("mqtt://u:p@ss@h", ("mqtt://h", "u", "p@ss")),  # the last @ ends the userinfo
        ("mqtt://:p@h", ("mqtt://h", None, "p")),
        ("mqtt://h:1883", ("mqtt://h:1883", None, None)),
        ("mqtt://h/a@b", ("mqtt://h/a@b", None, None)),  # an @ in the path is not userinfo
    ],
)
def test_credentials_are_split_off_a_url(url: str, expected: tuple[str, str, str]) -> None:
    assert split_url_credentials(url) == expected
    assert redact_url(url) == expected[0]


def test_credentials_in_the_url_log_in_and_leave_the_url(tmp_path: Path) -> None:
    cfg = load(tmp_path, config_text(f'url = "mqtt://meter-gw:{SECRET}@broker:1883"'))
    b = cfg.ingest.broker
    assert b.url == "mqtt://broker:1883"
    assert b.username == "meter-gw"
    assert b.password.get_secret_value() == SECRET
    assert SECRET not in repr(cfg)
    assert SECRET not in str(cfg)


def test_password_inline_from_the_environment_or_from_a_file(tmp_path: Path) -> None:
    text = config_text('url = "mqtt://h", username = "u", password = "${MQTT_PASSWORD}"')
    cfg = load(tmp_path, text, {"MQTT_PASSWORD": SECRET})
    assert cfg.ingest.broker.password.get_secret_value() == SECRET

    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt").write_text(SECRET + "\n")  # the newline is not part of it
    (tmp_path / "influx-token").write_text("tok-from-file")
    text = config_text(
        'url = "mqtt://h", username = "u", password_file = "secrets/mqtt"',
        'token_file = "influx-token"',
    )
    cfg = load(tmp_path, text)  # relative paths: next to the config file
    assert cfg.ingest.broker.password.get_secret_value() == SECRET
    assert cfg.sinks["influx"].token_value() == "tok-from-file"
    assert SECRET not in repr(cfg)


def test_a_bare_name_is_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "mqtt-password").write_text(SECRET)
    (creds / "influx-token").write_text("tok")
    text = config_text(
        'url = "mqtt://h", username = "u", password_file = "mqtt-password"',
        'token_file = "influx-token"',
    )
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert problems(tmp_path, text) == [
        f"ingest.broker.password_file: cannot read {tmp_path / 'mqtt-password'}: No such file "
        "or directory (a bare name is looked up in $CREDENTIALS_DIRECTORY, which is not set)",
        f"sinks.influx.token_file: cannot read {tmp_path / 'influx-token'}: No such file "
        "or directory (a bare name is looked up in $CREDENTIALS_DIRECTORY, which is not set)",
    ]
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = load(tmp_path, text)
    assert cfg.ingest.broker.password.get_secret_value() == SECRET
    assert cfg.ingest.broker.password_file == str(creds / "mqtt-password")
    assert cfg.sinks["influx"].token_value() == "tok"


def test_secret_problems_are_named_by_key(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    (tmp_path / "two-lines").write_text("a\nb\n")
    (tmp_path / "pw").write_text(SECRET)
    cases = {
        'url = "mqtt://h", username = "u", password_file = "empty"': (
            f"ingest.broker.password_file: {tmp_path / 'empty'} is empty"
        ),
        'url = "mqtt://h", username = "u", password_file = "two-lines"': (
            f"ingest.broker.password_file: {tmp_path / 'two-lines'} has more than one line "
            "(a secret file holds one line)"
        ),
        'url = "mqtt://h", username = "u", password = "x", password_file = "pw"': (
            "ingest.broker.password_file: password is set too; give one of them"
        ),
        'url = "mqtt://h", password = "x"': (
            "ingest.broker.password: needs username (MQTT sends no password without one)"
        ),
        f'url = "mqtt://u:{SECRET}@h", password_file = "pw"': (
            "ingest.broker: url: has a password and so has password or password_file"
        ),
        f'url = "mqtt://u:{SECRET}@h", username = "other"': (
            "ingest.broker: url: its user name differs from username; give one"
        ),
    }
    for broker, expected in cases.items():
        assert problems(tmp_path, config_text(broker)) == [expected], broker
    assert problems(tmp_path, config_text('url = "mqtt://h"', "")) == [
        "sinks.influx: token or token_file is required"
    ]
    assert problems(
        tmp_path, config_text('url = "mqtt://h"', 'token = "t"\ntoken_file = "pw"')
    ) == ["sinks.influx.token_file: token is set too; give one of them"]


def test_a_url_with_a_password_is_never_echoed(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        config_text(f'url = "http://u:{SECRET}@broker:1883"', url=f"https://u:{SECRET}@influx"),
    )
    assert found == [
        "ingest.broker.url: 'http://broker:1883' is not an MQTT URL "
        "(mqtt://host:port or mqtts://host:port)",
        "sinks.influx.url: credentials in the url are not used: set token or token_file",
    ]
    # Nor by pydantic's own message, when a model is built directly.
    with pytest.raises(pydantic.ValidationError) as info:
        MqttBroker(url=f"mqtt://u:{SECRET}@h:port")
    assert SECRET not in str(info.value)
    assert "'mqtt://h:port': the port" in str(info.value)
    with pytest.raises(pydantic.ValidationError) as info2:
        InfluxSinkConfig(url=f"https://u:{SECRET}@h", token=None, org="o", bucket="b")
    assert SECRET not in str(info2.value)


def test_check_config_prints_no_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.toml"
    good.write_text(config_text(f'url = "mqtt://u:{SECRET}@h"', f'token = "{SECRET}"'))
    assert main(["check-config", str(good)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text(config_text(f'url = "tcp://u:{SECRET}@h"', 'token = "t"\ncolour = 1'))
    assert main(["check-config", str(bad)]) == 2
    out = capsys.readouterr()
    assert "ok" in out.out
    assert "ingest.broker.url" in out.err
    assert SECRET not in out.out + out.err


def test_tls_files_are_checked_when_the_config_is_read(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    client = ca.client("gw-1")
    other = CertificateAuthority(tmp_path / "pki", name="other CA").client("gw-2")
    (tmp_path / "not-pem.pem").write_text("hello")

    def tls(table: str, url: str = "mqtts://h") -> list[str]:
        return problems(tmp_path, config_text(f'url = "{url}", tls = {{ {table} }}'))

    assert tls('ca_file = "pki/missing.pem"') == [
        f"ingest.broker.tls.ca_file: cannot read {tmp_path / 'pki/missing.pem'}: "
        "No such file or directory"
    ]
    (message,) = tls('ca_file = "not-pem.pem"')
    assert message.startswith(
        f"ingest.broker.tls: ca_file: {tmp_path / 'not-pem.pem'} holds no usable PEM certificate"
    )
    (message,) = tls(f'cert_file = "{client.cert}", key_file = "{other.key}"')
    assert message.startswith(f"ingest.broker.tls: cert_file: cannot use {client.cert} and ")
    assert tls(f'key_file = "{client.key}"') == [
        "ingest.broker.tls: key_file: needs cert_file (the certificate of this key)"
    ]
    assert tls("insecure = true", url="mqtt://h") == [
        "ingest.broker.tls: is set but the url is mqtt:// (use mqtts:// for TLS)"
    ]
    ok = load(
        tmp_path,
        config_text(
            'url = "mqtts://h", '
            f'tls = {{ ca_file = "pki/{ca.cert.name}", cert_file = "{client.cert}", '
            f'key_file = "{client.key}" }}'
        ),
    )
    tls_cfg = ok.ingest.broker.tls
    assert tls_cfg.ca_file == str(ca.cert)  # resolved next to the config file
    assert tls_cfg.ssl_context().verify_mode.name == "CERT_REQUIRED"
