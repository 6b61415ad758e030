"""connection = sendmail: a stand-in sendmail that records argv and stdin, its exit codes mapped; the command
line end to end; and, where Postfix is installed, its real sendmail relaying a mail intact to a local server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services.errors import Category, ConfigurationFault, OposError, PermanentError
from opos_tui.services.home import Home
from opos_tui.services.transports.base import Envelope
from opos_tui.services.transports.sendmail import SendmailTransport
from tests.conftest import Cli
from tests.mailprograms import BCC, CC, SENDER, rendered_mail
from tests.pdfs import write_letter
from tests.servers.smtp import HOST, LocalController

STAND_IN = """#!{python}
import json, os, sys
data = sys.stdin.buffer.read()
with open(os.environ["SENDMAIL_LOG"], "a") as log:
    log.write(json.dumps({{"argv": sys.argv, "stdin": data.decode("utf-8")}}) + "\\n")
sys.stderr.write(os.environ.get("SENDMAIL_STDERR", ""))
sys.exit(int(os.environ.get("SENDMAIL_EXIT", "0")))
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sendmail that records its argv and input in $SENDMAIL_LOG and exits with $SENDMAIL_EXIT."""
    script = tmp_path / "bin" / "sendmail"
    script.parent.mkdir()
    script.write_text(STAND_IN.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("SENDMAIL_LOG", str(tmp_path / "sendmail.jsonl"))
    return script


def recorded(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "sendmail.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


async def test_the_mail_goes_on_stdin_of_sendmail_i_f_sender_recipients(
    stand_in: Path, home: Home, tmp_path: Path
) -> None:
    mail = rendered_mail(home, tmp_path)
    result = await SendmailTransport(str(stand_in)).send(mail.message, mail.envelope)
    [call] = recorded(tmp_path)
    assert call["argv"] == [str(stand_in), "-i", "-f", SENDER, "--", "joerg@kunde.example", CC, BCC]
    # The rendered mail byte for byte, with Unix line ends; the Bcc is in the envelope only.
    assert call["stdin"].encode() == mail.message.replace(b"\r\n", b"\n")
    assert "\r" not in call["stdin"] and "Bcc" not in call["stdin"]
    assert f"accepted by the local mail program {stand_in} (exit 0)" in result.reply


async def test_an_address_that_looks_like_an_option_is_refused_and_nothing_runs(
    stand_in: Path, home: Home, tmp_path: Path
) -> None:
    mail = rendered_mail(home, tmp_path)
    for envelope in (
        Envelope(SENDER, ("-oQ/tmp@kunde.example",)),
        Envelope("-bs@mueller.example", ("joerg@kunde.example",)),
    ):
        with pytest.raises(PermanentError, match="starts with '-'"):
            await SendmailTransport(str(stand_in)).send(mail.message, envelope)
    assert recorded(tmp_path) == []


@pytest.mark.parametrize(
    ("status", "category", "name"),
    [
        (75, Category.TRANSIENT, "EX_TEMPFAIL"),
        (67, Category.PERMANENT, "EX_NOUSER"),
        (65, Category.PERMANENT, "EX_DATAERR"),
        (68, Category.PERMANENT, "EX_NOHOST"),
        (78, Category.CONFIGURATION, "EX_CONFIG"),
        (69, Category.CONFIGURATION, "EX_UNAVAILABLE"),
        (72, Category.CONFIGURATION, "EX_OSFILE"),
        (77, Category.CONFIGURATION, "EX_NOPERM"),
        (74, Category.TRANSIENT, "EX_IOERR"),
        (1, Category.CONFIGURATION, ""),
    ],
)
async def test_exit_codes_and_stderr_are_mapped(
    status: int,
    category: Category,
    name: str,
    stand_in: Path,
    home: Home,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENDMAIL_EXIT", str(status))
    monkeypatch.setenv("SENDMAIL_STDERR", "sendmail: fatal: queue file write error\n")
    mail = rendered_mail(home, tmp_path)
    with pytest.raises(OposError) as raised:
        await SendmailTransport(str(stand_in)).send(mail.message, mail.envelope)
    error = raised.value
    assert error.category is category
    assert f"{status} {name}".strip() in error.en and f"{status} {name}".strip() in error.de
    assert "queue file write error" in error.en and "queue file write error" in error.de


async def test_a_missing_or_unusable_program_is_a_configuration_fault(tmp_path: Path) -> None:
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    for path, why in (
        (tmp_path / "nowhere" / "sendmail", "does not exist"),
        (tmp_path, "is a folder"),
        (plain, "is not executable"),
        ("", "is empty"),
    ):
        transport = SendmailTransport(str(path))
        with pytest.raises(ConfigurationFault, match=why):
            await transport.connect()
        with pytest.raises(ConfigurationFault, match=why):
            await transport.send(b"Subject: x\r\n\r\nx\r\n", Envelope(SENDER, (CC,)))
        assert transport.state.stage == "send"


def configure_sendmail(cli: Cli, path: Path | str) -> None:
    for key, value in (
        ("connection", "sendmail"),
        ("sendmail.path", str(path)),
        ("sender.address", SENDER),
        ("sender.name", "Müller GmbH"),
    ):
        result = cli("config", "set", key, value)
        assert result.code == 0, result.err


def test_test_connection_checks_the_program_and_sends_nothing(
    cli: Cli, home: Home, stand_in: Path, tmp_path: Path
) -> None:
    configure_sendmail(cli, stand_in)
    result = cli("test-connection", "--json")
    data = json.loads(result.out)
    assert (result.code, data["ok"], data["stage"]) == (0, True, "done")
    assert str(stand_in) in data["transcript"][0]["summary"] and "executable" in data["transcript"][0]["summary"]
    assert recorded(tmp_path) == []
    result = cli("test-connection", "--send-test-to", "test@kunde.example", "--json")
    assert result.code == 0, result.out
    [call] = recorded(tmp_path)
    assert call["argv"][-1] == "test@kunde.example" and "Verbindungstest" in call["stdin"]
    cli("config", "set", "sendmail.path", str(tmp_path / "missing"))
    result = cli("test-connection", "--json")
    data = json.loads(result.out)
    assert (result.code, data["ok"], data["stage"]) == (1, False, "connect")
    assert "does not exist" in data["error"]


def test_send_delivers_the_queued_mails_through_sendmail(cli: Cli, home: Home, stand_in: Path, tmp_path: Path) -> None:
    configure_sendmail(cli, stand_in)
    for n in (1, 2):
        pdf = write_letter(tmp_path / f"Avis_{n}.pdf", f"Z-{n}")
        result = cli(
            "enqueue", "--type", "payment-advice", "--to", f"Kunde {n} <kunde{n}@kunde.example>",
            "--attach", str(pdf), "--var", "customer_name=Ärger", "--var", f"document_number=Z-{n}",
        )  # fmt: skip
        assert result.code == 0, result.err
    result = cli("send", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["sent"] == [1, 2]
    calls = recorded(tmp_path)
    assert [c["argv"][3:] for c in calls] == [
        [SENDER, "--", "kunde1@kunde.example"],
        [SENDER, "--", "kunde2@kunde.example"],
    ]
    assert all("Zahlungsavis" in c["stdin"] and "Content-Disposition: attachment" in c["stdin"] for c in calls)
    rows = json.loads(cli("queue", "--json").out)
    assert {r["status"] for r in rows} == {"sent"}


# --- the real thing: Postfix's sendmail ------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.received: list[Any] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(envelope)
        self.arrived.set()
        return "250 2.0.0 Ok: queued"


@pytest.fixture
def postfix(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Inbox]:
    """A private Postfix instance (its own configuration and queue in tmp_path) that relays everything to a
    local aiosmtpd; ``MAIL_CONFIG`` points the real sendmail at it."""
    if not (shutil.which("postfix") and Path("/usr/sbin/sendmail").exists() and Path("/etc/postfix").is_dir()):
        pytest.skip("Postfix is not installed (Debian: apt-get install postfix)")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix instance needs root to start its master process")
    inbox = _Inbox()
    controller = LocalController(inbox)
    controller.start()
    port = controller.port
    # Postfix's own processes (user postfix) must reach it: not inside pytest's owner-only folders.
    root = Path(tempfile.mkdtemp(prefix="opos-tui-postfix-"))
    root.chmod(0o755)
    conf, queue, data = root / "conf", root / "queue", root / "data"
    for folder in (conf, queue, data):
        folder.mkdir(parents=True)
    shutil.chown(data, "postfix")
    shutil.copy("/etc/postfix/master.cf", conf / "master.cf")
    (conf / "main.cf").write_text(
        "\n".join(
            [
                "compatibility_level = 3.6",
                f"queue_directory = {queue}",
                f"data_directory = {data}",
                "inet_interfaces = loopback-only",
                "inet_protocols = ipv4",
                "master_service_disable = inet",  # no smtpd of its own on port 25
                "mydestination =",
                "myhostname = opos-test.localdomain",
                f"relayhost = [{HOST}]:{port}",
                "smtp_tls_security_level = none",
                f"maillog_file = {root}/maillog",
                f"maillog_file_prefixes = {root}",
                "",
            ]
        )
    )
    subprocess.run(["postconf", "-c", str(conf), "-F", "*/*/chroot = n"], check=True)
    started = subprocess.run(["postfix", "-c", str(conf), "start"], capture_output=True, text=True)
    try:
        if started.returncode != 0:
            log = (root / "maillog").read_text() if (root / "maillog").exists() else started.stderr
            pytest.skip(f"the private Postfix instance did not start: {log.strip()[-300:]}")
        monkeypatch.setenv("MAIL_CONFIG", str(conf))
        yield inbox
    finally:
        subprocess.run(["postfix", "-c", str(conf), "stop"], capture_output=True)
        controller.stop()
        shutil.rmtree(root, ignore_errors=True)


async def test_postfix_sendmail_relays_the_mail_intact(postfix: _Inbox, home: Home, tmp_path: Path) -> None:
    mail = rendered_mail(home, tmp_path)
    result = await SendmailTransport("/usr/sbin/sendmail").send(mail.message, mail.envelope)
    assert "exit 0" in result.reply
    assert await asyncio_wait(postfix.arrived), "Postfix did not relay the mail within 60 s"
    [envelope] = postfix.received
    assert envelope.mail_from == SENDER
    assert sorted(envelope.rcpt_tos) == sorted(["joerg@kunde.example", CC, BCC])
    # Postfix puts its Received header on top; everything below it is the mail as rendered, byte for byte.
    content: bytes = envelope.original_content
    lines = content.split(b"\r\n")
    first = next(i for i, line in enumerate(lines) if not line.startswith((b"Received:", b"\t", b" ")))
    assert b"\r\n".join(lines[first:]) == mail.message


async def asyncio_wait(event: threading.Event) -> bool:
    import asyncio

    return await asyncio.to_thread(event.wait, 60)
