"""`opos-tui test-connection` and the connection test service: the CLI contract, stages, no secrets shown."""

from __future__ import annotations

import base64
import json
from email import message_from_bytes, policy
from typing import Any

import pytest

from opos_tui.services import secrets
from opos_tui.services import settings as settings_module
from opos_tui.services.connection_test import run_connection_test
from opos_tui.services.home import Home
from opos_tui.services.transports.base import HandshakeEvent
from tests.servers.smtp import PASSWORD, USER, SmtpServer

JSON_KEYS = {"ok", "stage", "tls", "error", "transcript"}


def configure(home: Home, server: SmtpServer, security: str | None = None, **values: Any) -> None:
    settings_module.save(home, server.settings(security, **values))


def with_password(home: Home, server: SmtpServer, security: str | None = None, **values: Any) -> None:
    configure(home, server, security, auth__method="password", auth__profile=USER, **values)
    secrets.open_store(home).set(secrets.PASSWORD, PASSWORD)


def secret_forms() -> list[str]:
    """The password as it could leak: plain, or inside an AUTH PLAIN / LOGIN payload."""
    plain = base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()
    return [PASSWORD, plain, base64.b64encode(PASSWORD.encode()).decode()]


def test_human_output_one_line_per_stage(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("starttls")
    with_password(home, server)
    result = cli("test-connection")
    assert result.code == 0, result.err
    stages = [line.split()[0] for line in result.out.splitlines()]
    assert stages == ["connect", "ehlo", "tls", "ehlo", "auth", "done"]
    assert all(line.split()[1] == "ok" for line in result.out.splitlines())
    assert "TLSv1." in result.out and f"Logged in as {USER} with PLAIN" in result.out
    assert server.received == []  # no test mail unless asked for


def test_json_contract_on_success(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("tls")
    with_password(home, server)
    result = cli("test-connection", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert set(data) == JSON_KEYS
    assert (data["ok"], data["stage"], data["tls"], data["error"]) == (True, "done", True, None)
    assert [event["stage"] for event in data["transcript"]] == ["connect", "tls", "ehlo", "auth", "done"]
    assert "C: AUTH PLAIN ***" in data["transcript"][3]["exchange"]


def test_json_contract_on_failure(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("starttls", cert="untrusted")
    configure(home, server)
    result = cli("test-connection", "--json")
    assert result.code == 1
    data = json.loads(result.out)
    assert set(data) == JSON_KEYS
    assert (data["ok"], data["stage"], data["tls"]) == (False, "tls", False)
    assert "not trusted" in data["error"] and "smtp.ca_file" in data["error"]
    assert data["transcript"][-1]["status"] == "failed"


def test_failure_in_german(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server, "StartTls")
    result = cli("test-connection", "--lang", "de")
    assert result.code == 1
    assert result.out.splitlines()[-1].startswith("tls     FAIL")
    assert "bietet kein STARTTLS an" in result.out


def test_send_test_to_delivers_a_test_mail(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("starttls")
    with_password(home, server, sender__name="Müller GmbH – Buchhaltung")
    result = cli("test-connection", "--send-test-to", "admin@example.test", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    assert [event["stage"] for event in data["transcript"]][-2:] == ["send", "done"]
    [received] = server.received
    assert (received.rcpt_tos, received.tls, received.user) == (["admin@example.test"], True, USER)
    mail = message_from_bytes(received.content, policy=policy.default)
    assert "connection test" in mail["Subject"] and mail["From"].addresses[0].display_name.startswith("Müller")


def test_test_mail_to_and_from_international_domains(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    configure(home, server, sender__address="buchhaltung@müller-gmbh.de", sender__name="Müller GmbH")
    result = cli("test-connection", "--send-test-to", "admin@straße.example")
    assert result.code == 0, result.out + result.err
    [received] = server.received
    assert (received.mail_from, received.rcpt_tos) == (
        "buchhaltung@xn--mller-gmbh-9db.de",
        ["admin@xn--strae-oqa.example"],
    )
    mail = message_from_bytes(received.content, policy=policy.default)
    assert mail["From"] == "Müller GmbH <buchhaltung@xn--mller-gmbh-9db.de>"
    assert mail["To"] == "admin@xn--strae-oqa.example"
    assert mail["Message-ID"].endswith("@xn--mller-gmbh-9db.de>")


def test_password_never_in_the_output(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("plain")
    with_password(home, server, smtp__allow_plain_auth=True)
    outputs = [
        cli(*argv)
        for argv in (
            ("test-connection",),
            ("test-connection", "--json"),
            ("test-connection", "--send-test-to", "a@b.test", "--json"),
        )
    ]
    assert [result.code for result in outputs] == [0, 0, 0]
    assert server.logins == [USER] * 3
    for result in outputs:
        for secret in secret_forms():
            assert secret not in result.out and secret not in result.err
    assert "C: AUTH PLAIN ***" in outputs[1].out


def test_refused_login_is_exit_1_at_stage_auth(cli: Any, home: Home, smtp_server: Any) -> None:
    server = smtp_server("starttls")
    with_password(home, server)
    secrets.open_store(home).set(secrets.PASSWORD, "Falsch-0815")
    result = cli("test-connection", "--json")
    data = json.loads(result.out)
    assert (result.code, data["ok"], data["stage"], data["tls"]) == (1, False, "auth", True)
    assert "535" in data["error"] and "Falsch-0815" not in result.out
    assert data["transcript"][-1]["exchange"] == [
        "C: AUTH PLAIN ***",
        "S: 535 5.7.8 Authentication credentials invalid",
    ]


@pytest.mark.parametrize(
    "address", ["not-an-address", "a@b", "x@example.test\r\nBcc: victim@example.test", "jörg@example.test"]
)
def test_bad_test_address_is_usage_error(cli: Any, home: Home, smtp_server: Any, address: str) -> None:
    server = smtp_server("plain")
    configure(home, server)
    result = cli("test-connection", "--send-test-to", address, "--json")
    assert (result.code, result.out) == (2, "")
    assert "--send-test-to" in result.err
    assert server.received == []


def test_missing_host_is_usage_error(cli: Any, home: Home) -> None:
    result = cli("test-connection", "--json")
    assert (result.code, result.out) == (2, "")
    assert "smtp.host" in result.err


def test_mapi_connection_needs_windows(cli: Any, home: Home) -> None:
    cli("config", "set", "connection", "windows")
    result = cli("test-connection", "--json")
    data = json.loads(result.out)
    assert (result.code, data["ok"], data["stage"]) == (1, False, "connect")
    assert "works on Windows only" in data["error"]


def test_connection_refused_is_exit_1(cli: Any, home: Home) -> None:
    from tests.servers.smtp import free_port

    port = free_port()
    cli("config", "set", "smtp.host", "127.0.0.1")
    cli("config", "set", "smtp.port", str(port))
    result = cli("test-connection")
    assert result.code == 1
    assert result.out.startswith("connect FAIL") and f"port {port}" in result.out


async def test_events_arrive_as_each_stage_happens(smtp_server: Any, tmp_path: Any) -> None:
    server = smtp_server("starttls")
    store = secrets.FileSecretStore(tmp_path / "secrets.toml")
    seen: list[HandshakeEvent] = []
    result = await run_connection_test(
        server.settings(auth__method="password", auth__profile=USER), store, password=PASSWORD, on_event=seen.append
    )
    assert result.ok and seen == result.transcript
    assert [e.stage for e in seen] == ["connect", "ehlo", "tls", "ehlo", "auth", "done"]
    shown = json.dumps(result.to_json())
    assert all(secret not in shown for secret in secret_forms())
