"""The transport interface on its own: a transport that hands mails to a program on this computer (as a
sendmail, Simple MAPI or Graph transport will) drives the dispatcher and the connection test through the
interface alone; the registry; exit codes that follow the error's category."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import Self, get_args

import pytest

from opos_tui.cli import EXIT_FAILED, EXIT_USAGE, UsageError, exit_code
from opos_tui.services import secrets
from opos_tui.services.addresses import AddressError
from opos_tui.services.compose import BadLetter, LetterRequest, NoSender, prepare
from opos_tui.services.connection_test import run_connection_test
from opos_tui.services.dispatcher import Dispatcher
from opos_tui.services.errors import (
    Category,
    ConfigError,
    ConfigurationFault,
    DeliveryUncertain,
    InteractionNeeded,
    OposError,
    PermanentError,
    SecretStoreError,
    TransientError,
    TransportUnavailable,
)
from opos_tui.services.home import Home
from opos_tui.services.queue import QueueError, Status, UnknownItems, open_queue
from opos_tui.services.settings import Connection, Settings, check, save
from opos_tui.services.transports import registry
from opos_tui.services.transports.base import (
    Envelope,
    HandshakeEvent,
    Observer,
    SendResult,
    SessionState,
    Stage,
    Then,
    TokenProvider,
)
from tests.conftest import ROOT
from tests.pdfs import write_letter


class ProgramBusy(TransientError):
    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__("the mail program is busy", "das Mailprogramm ist beschäftigt")


class ProgramRefused(PermanentError):
    def __init__(self, address: str, reply: str) -> None:
        self.reply = reply
        self.refused = {address: reply}
        super().__init__(f"the mail program refused {address}", f"das Mailprogramm lehnte {address} ab")


class ProgramVanished(DeliveryUncertain):
    def __init__(self) -> None:
        super().__init__("the mail program ended before it confirmed", "das Mailprogramm endete vor der Bestätigung")


class NotSignedIn(ConfigurationFault):
    def __init__(self) -> None:
        super().__init__("the mail program refused the profile", "das Mailprogramm lehnte das Profil ab")


class MailProgram:
    """A transport that hands each mail to a program on this computer (kept here as a list of what it took)
    and answers as that program would, by recipient: ``busy@`` try later, ``gone@`` no such user, ``lost@``
    the program ends before it confirms; anyone else is handed over."""

    def __init__(self, observer: Observer | None, *, refuse_profile: bool = False) -> None:
        self.observer = observer
        self.refuse_profile = refuse_profile
        self.handed_over: list[tuple[bytes, Envelope]] = []
        self._state = SessionState()

    def _step(self, stage: Stage, summary: str, *exchange: str) -> None:
        self._state = SessionState(stage, encrypted=True)
        if self.observer is not None:
            self.observer(HandshakeEvent(stage, "ok", summary, exchange))

    @property
    def state(self) -> SessionState:
        return self._state

    async def connect(self) -> None:
        self._step(Stage.CONNECT, "mail program found")
        if self.refuse_profile:
            self._state = SessionState(Stage.SIGN_IN, True, ("> logon profile 'Buchhaltung'", "< refused"))
            raise NotSignedIn()
        self._step(Stage.SIGN_IN, "profile Buchhaltung")

    async def send(
        self, message: bytes, envelope: Envelope, ready: Awaitable[None] | None = None, then: Then | None = None
    ) -> SendResult:
        if ready is not None:
            await ready
        self._state = SessionState(Stage.SEND, encrypted=True)
        to = envelope.recipients[0]
        if to.startswith("busy@"):
            raise ProgramBusy("75 temporary failure")
        if to.startswith("gone@"):
            raise ProgramRefused(to, "67 addressee unknown")
        if to.startswith("lost@"):
            raise ProgramVanished()
        self.handed_over.append((message, envelope))
        self._step(Stage.SEND, f"handed over to {to}")
        return SendResult("0 handed over")

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def mail_program(*, refuse_profile: bool = False) -> registry.Builder:
    def build(
        settings: Settings,
        store: secrets.SecretStore,
        *,
        password: str | None = None,
        token_provider: TokenProvider | None = None,
        observer: Observer | None = None,
    ) -> MailProgram:
        return MailProgram(observer, refuse_profile=refuse_profile)

    return build


def local_program_settings(monkeypatch: pytest.MonkeyPatch, *, refuse_profile: bool = False) -> Settings:
    """The connection type ``outlook`` made to use the mail program above, through the registry."""
    kind = registry.ConnectionType("Mail program", lambda: mail_program(refuse_profile=refuse_profile))
    monkeypatch.setitem(registry.CONNECTIONS, "outlook", kind)
    return check({"connection": "outlook", "sender": {"address": "buchhaltung@mueller.example"}})


async def test_a_transport_that_is_not_smtp_drives_the_dispatcher(home: Home, tmp_path: Path) -> None:
    current = check({"sender": {"address": "buchhaltung@mueller.example"}})
    programs: list[MailProgram] = []

    def factory() -> MailProgram:
        programs.append(MailProgram(None))
        return programs[-1]

    with open_queue(home) as q:
        ids = {}
        for n, who in enumerate(["kunde", "busy", "gone", "lost"]):
            to = f"{who}@aerger.example"
            pdf = write_letter(tmp_path / f"Avis_{n}.pdf", f"Z-{n}")
            request = LetterRequest(
                "payment-advice",
                to=[to],
                attachments=[pdf],
                vars={"customer_name": "Ärger", "document_number": f"Z-{n}"},
            )
            ids[who] = q.enqueue(prepare(current, request)).id
        result = await Dispatcher(q, factory).run()
        assert (result.sent, result.deferred, result.failed, result.uncertain) == (
            [ids["kunde"]],
            [ids["busy"]],
            [ids["gone"]],
            [ids["lost"]],
        )
        sent, busy, gone, lost = (q.get(ids[k]) for k in ("kunde", "busy", "gone", "lost"))
    assert sent.status is Status.SENT and sent.history[-1].reply == "0 handed over"
    assert (busy.status, busy.error) == (Status.DEFERRED, "75 temporary failure")
    assert (gone.status, gone.error) == (Status.FAILED, "67 addressee unknown")
    assert [r.refused for r in gone.recipients] == ["67 addressee unknown"]
    assert (lost.status, lost.error) == (Status.UNCERTAIN, "the mail program ended before it confirmed")
    assert [env.recipients for p in programs for _, env in p.handed_over] == [("kunde@aerger.example",)]


async def test_a_transport_that_is_not_smtp_passes_the_connection_test(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = local_program_settings(monkeypatch)
    seen: list[HandshakeEvent] = []
    result = await run_connection_test(
        current, secrets.open_store(home), send_test_to="admin@mueller.example", on_event=seen.append
    )
    assert (result.ok, result.stage, result.tls, result.error) == (True, "done", True, None)
    assert [(e.stage, e.status) for e in seen] == [("connect", "ok"), ("auth", "ok"), ("send", "ok"), ("done", "ok")]
    assert result.to_json()["transcript"] == [e.to_json() for e in seen]


async def test_the_connection_test_reports_where_a_transport_that_is_not_smtp_failed(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = local_program_settings(monkeypatch, refuse_profile=True)
    result = await run_connection_test(current, secrets.open_store(home))
    assert (result.ok, result.stage, result.tls) == (False, "auth", True)
    assert result.error == "the mail program refused the profile"
    failed = result.transcript[-1]
    assert (failed.stage, failed.status) == ("auth", "failed")
    assert failed.exchange == ("> logon profile 'Buchhaltung'", "< refused")


def test_the_registry_knows_every_connection_type_and_the_form_shows_its_labels() -> None:
    assert list(registry.CONNECTIONS) == list(get_args(Connection))
    assert registry.connection_labels() == {
        "windows": "Windows-Standard (Simple MAPI)",
        "outlook": "Outlook (Extended MAPI)",
        "smtp": "SMTP",
        "sendmail": "sendmail (Unix)",
    }


@pytest.mark.skipif(sys.platform == "win32", reason="the message for computers without Windows")
@pytest.mark.parametrize("connection", ["windows", "outlook"])
def test_windows_connection_types_are_unavailable_elsewhere(home: Home, connection: Connection) -> None:
    current = check({"connection": connection, "auth": {"method": "none"}})
    with pytest.raises(TransportUnavailable) as caught:
        registry.build_transport(current, secrets.open_store(home))
    label = registry.CONNECTIONS[connection].label
    assert caught.value.en == (
        f"Connection type {connection} ({label}) works on Windows only: it hands the mails to a Windows mail "
        f"program such as Outlook, and this computer runs {sys.platform}. Set connection to smtp (or sendmail, "
        "the local mail program of a Unix server)."
    )


def test_a_transport_module_is_imported_only_when_its_connection_type_is_chosen(home: Home) -> None:
    probe = (
        "import sys, opos_tui.cli, opos_tui.services.dispatcher, opos_tui.services.connection_test; "
        "print('aiosmtplib' in sys.modules)"
    )
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, check=True)
    assert imported.stdout.strip() == "False"


def test_exit_codes_follow_the_category() -> None:
    assert {category: exit_code(category) for category in Category} == {
        Category.INPUT: EXIT_USAGE,
        Category.TRANSIENT: EXIT_FAILED,
        Category.PERMANENT: EXIT_FAILED,
        Category.UNCERTAIN: EXIT_FAILED,
        Category.CONFIGURATION: EXIT_FAILED,
        Category.INTERACTION: EXIT_FAILED,
    }


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad value", "falscher Wert"), EXIT_USAGE),
        (BadLetter("no attachment", "kein Anhang"), EXIT_USAGE),
        (AddressError("nothing before the @", "nichts vor dem @"), EXIT_USAGE),
        (UnknownItems([7]), EXIT_USAGE),
        (UsageError("give item numbers or --all", "Nummern oder --all angeben"), EXIT_USAGE),
        (ConfigurationFault("login refused", "Anmeldung abgelehnt"), EXIT_FAILED),
        (NoSender(), EXIT_FAILED),
        (TransportUnavailable("not here", "nicht hier"), EXIT_FAILED),
        (SecretStoreError("locked", "gesperrt"), EXIT_FAILED),
        (QueueError("disk full", "Platte voll"), EXIT_FAILED),
        (InteractionNeeded("sign in", "anmelden"), EXIT_FAILED),
    ],
)
def test_each_error_exits_as_its_category_says(error: OposError, code: int) -> None:
    assert exit_code(error.category) == code


def test_bad_input_and_a_configuration_fault_are_told_apart() -> None:
    assert ConfigError.category is not ConfigurationFault.category


class PromptingProgram(MailProgram):
    """A mail program that holds each mail until its (simulated) security prompt is answered: ``answered``."""

    answered = threading.Event()

    async def send(
        self, message: bytes, envelope: Envelope, ready: Awaitable[None] | None = None, then: Then | None = None
    ) -> SendResult:
        await asyncio.to_thread(self.answered.wait, 30)
        return await super().send(message, envelope, ready, then)


async def test_the_queue_says_the_mail_program_may_be_asking_while_it_holds_a_mail(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opos_tui.app import OposApp
    from tests.test_queue_screen import letter, queue_screen, text_of, until

    PromptingProgram.answered.clear()
    programs: list[PromptingProgram] = []

    def build(settings: Settings, store: secrets.SecretStore, **_: object) -> PromptingProgram:
        programs.append(PromptingProgram(None))
        return programs[-1]

    kind = registry.ConnectionType("Mail program", lambda: build, may_ask=True)
    monkeypatch.setitem(registry.CONNECTIONS, "outlook", kind)
    home.ensure()
    save(home, check({"connection": "outlook", "sender": {"address": "buchhaltung@example.test"}}))
    letter(home, 1)
    app = OposApp(home)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = queue_screen(app)
        await pilot.press("s")
        try:
            await until(pilot, lambda: "may be asking for confirmation" in text_of(screen, "#progress-label"))
        finally:
            PromptingProgram.answered.set()
        await until(pilot, lambda: not screen.sending and "Done:" in text_of(screen, "#progress-label"))
    assert [envelope.recipients for _, envelope in programs[0].handed_over] == [("kunde1@example.test",)]
