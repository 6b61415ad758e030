"""Outlook through COM, with a fake ``Dispatch`` at the COM boundary: the calls the transport makes, in order,
the attachment files Outlook is given, and what each COM error becomes. Off Windows, the connection type says
plainly that it works on Windows only, and `test-connection` and `send` exit 1 with every mail still pending."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services import secrets
from opos_tui.services.errors import Category, ConfigurationFault, OposError, TransientError, TransportUnavailable
from opos_tui.services.home import Home
from opos_tui.services.secrets import open_store
from opos_tui.services.settings import Settings, check
from opos_tui.services.transports.base import HandshakeEvent, Stage
from opos_tui.services.transports.outlook import (
    CO_E_CLASSSTRING,
    CO_E_SERVER_EXEC_FAILURE,
    E_ABORT,
    MAPI_E_LOGON_FAILED,
    RPC_E_CALL_REJECTED,
    OutlookDeclined,
    OutlookTransport,
    build,
)
from tests.conftest import Cli
from tests.mailprograms import BCC, CC, SUBJECT, rendered_mail
from tests.pdfs import write_letter


class ComError(Exception):
    """Shaped like ``pywintypes.com_error``: (hresult, text, excepinfo, argerror); excepinfo[5] the inner scode."""

    def __init__(self, hresult: int, text: str, inner: int | None = None) -> None:
        info = (0, "Microsoft Outlook", f"{text} (inner)", None, 0, inner - (1 << 32)) if inner else None
        super().__init__(hresult - (1 << 32), text, info, None)
        self.hresult = hresult - (1 << 32)


DISP_E_EXCEPTION = 0x80020009


class Recorder:
    """Records every call and property set, as (path, what, value), with the thread it came from."""

    def __init__(self, fail: dict[str, Exception] | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.threads: set[int] = set()
        self.fail = fail or {}
        self.files: list[tuple[str, bytes]] = []

    def note(self, path: str, what: str, value: Any = None) -> None:
        self.threads.add(threading.get_ident())
        self.calls.append((path, what, value))
        if path in self.fail:
            raise self.fail[path]


class Fake:
    def __init__(self, recorder: Recorder, path: str) -> None:
        object.__setattr__(self, "_recorder", recorder)
        object.__setattr__(self, "_path", path)

    def __setattr__(self, name: str, value: Any) -> None:
        self._recorder.note(f"{self._path}.{name}", "set", value)

    def __getattr__(self, name: str) -> Any:
        recorder, path = self._recorder, f"{self._path}.{name}"
        values = {"Version": "16.0.0.17928", "CurrentProfileName": "Outlook", "Count": 2}
        if name in values:
            recorder.note(path, "get")
            return values[name]
        if name == "DisplayName":
            recorder.note(path, "get")
            return f"account{self._path[-2]}@mueller.example"
        if name in ("Accounts", "Attachments"):
            return Fake(recorder, path)

        def method(*args: Any) -> Any:
            recorder.note(path, "call", args)
            if name == "Add":  # Outlook copies the file at once: read it now, as Outlook would
                recorder.files.append((args[0], Path(args[0]).read_bytes()))
            return Fake(recorder, f"{path}({', '.join(map(repr, args))})")

        return method


def fake_dispatch(recorder: Recorder) -> Any:
    def dispatch(prog_id: str) -> Any:
        recorder.note("Dispatch", "call", (prog_id,))
        return Fake(recorder, "app")

    return dispatch


def session(recorder: Recorder, **options: Any) -> OutlookTransport:
    return OutlookTransport(
        dispatch=fake_dispatch(recorder), com_init=lambda: recorder.note("CoInitialize", "call"), **options
    )


async def test_the_mail_goes_through_the_outlook_object_model(home: Home, tmp_path: Path) -> None:
    mail = rendered_mail(home, tmp_path)
    recorder = Recorder()
    transport = session(recorder)
    async with transport:
        result = await transport.send(mail.message, mail.envelope)
    assert "accepted by Outlook" in result.reply and "delivery is not confirmed" in result.reply
    item = "app.CreateItem(0)"
    namespace = "app.GetNamespace('MAPI')"
    assert recorder.calls[:4] == [
        ("CoInitialize", "call", None),
        ("Dispatch", "call", ("Outlook.Application",)),
        ("app.Version", "get", None),
        ("app.GetNamespace", "call", ("MAPI",)),
    ]
    assert not any(c[0] == f"{namespace}.Logon" for c in recorder.calls)  # no Anmelden: the running Outlook
    assert [c for c in recorder.calls if c[0].startswith(item) and not c[0].endswith("Attachments.Add")] == [
        (f"{item}.To", "set", "joerg@kunde.example"),
        (f"{item}.CC", "set", CC),
        (f"{item}.BCC", "set", BCC),
        (f"{item}.Subject", "set", SUBJECT),
        (f"{item}.Body", "set", "Sehr geehrter Herr Ärger,\r\nbitte überweisen Sie 1.234,56 € bis zum 31.12.\r\n"),
        (f"{item}.Send", "call", ()),
    ]
    assert [Path(path).name for path, _data in recorder.files] == [p.name for p in mail.pdfs]
    assert [data for _path, data in recorder.files] == [p.read_bytes() for p in mail.pdfs]
    assert not any(Path(path).exists() for path, _data in recorder.files)
    assert len(recorder.threads) == 1  # every COM call from the one thread that made the objects


async def test_anmelden_logs_on_to_the_profile_and_connect_says_what_it_would_use(home: Home) -> None:
    recorder = Recorder()
    events: list[HandshakeEvent] = []
    async with session(recorder, profile="Buchhaltung", password="Sehr-geheim#4711", observer=events.append):
        pass
    logon = ("Buchhaltung", "Sehr-geheim#4711", False, True)
    assert ("app.GetNamespace('MAPI').Logon", "call", logon) in recorder.calls
    assert [(e.stage, e.status) for e in events] == [(Stage.CONNECT, "ok"), (Stage.SIGN_IN, "ok")]
    assert "Outlook 16.0.0.17928" in events[0].summary
    assert "profile Outlook" in events[1].summary
    assert "account1@mueller.example, account2@mueller.example" in events[1].summary
    assert all("Sehr-geheim" not in e.summary for e in events)
    assert not any(c[0].endswith(("Send", "CreateItem")) for c in recorder.calls)  # connecting sends nothing


@pytest.mark.parametrize(
    ("where", "error", "kind", "says"),
    [
        ("app.CreateItem(0).Send", ComError(DISP_E_EXCEPTION, "Operation aborted", E_ABORT), OutlookDeclined,
         "A program is trying to send an e-mail message on your behalf"),
        ("Dispatch", ComError(CO_E_CLASSSTRING, "Invalid class string"), TransportUnavailable,
         "new Outlook has no interface"),
        ("Dispatch", ComError(CO_E_SERVER_EXEC_FAILURE, "Server execution failed"), ConfigurationFault,
         "administrator"),
        ("app.CreateItem(0).Send", ComError(RPC_E_CALL_REJECTED, "Call was rejected by callee"), TransientError,
         "busy"),
        ("app.CreateItem(0).Send", ComError(DISP_E_EXCEPTION, "Outlook does not recognize one or more names."),
         OposError, "does not recognize"),
    ],
)  # fmt: skip
async def test_com_errors_say_what_to_do(
    where: str, error: Exception, kind: type[OposError], says: str, home: Home, tmp_path: Path
) -> None:
    mail = rendered_mail(home, tmp_path)
    transport = session(Recorder(fail={where: error}))
    with pytest.raises(kind) as raised:
        await transport.connect()
        await transport.send(mail.message, mail.envelope)
    await transport.close()
    assert says in raised.value.en
    assert raised.value.de != raised.value.en
    if where.endswith("Send") and kind is OposError:
        assert raised.value.category is Category.PERMANENT
    if kind is OutlookDeclined:
        assert raised.value.category is Category.INTERACTION
        assert "Programmgesteuerter Zugriff" in raised.value.de


async def test_a_refused_logon_stops_with_the_profile_named() -> None:
    error = ComError(MAPI_E_LOGON_FAILED, "The profile name is not valid.")
    transport = session(Recorder(fail={"app.GetNamespace('MAPI').Logon": error}), profile="X", password="y")
    with pytest.raises(ConfigurationFault, match=r"auth\.profile") as raised:
        await transport.connect()
    await transport.close()
    assert "y" not in raised.value.en.split()  # the password is never in a message


def test_outlook_anmelden_needs_its_profile_and_a_password(home: Home) -> None:
    store = open_store(home)
    anmelden = check({"connection": "outlook", "auth": {"method": "password", "profile": "P"}})
    with pytest.raises(OposError, match="no password"):
        build(anmelden, store)
    typed = build(anmelden, store, password="typed-in-the-form")  # the form tests what is typed, unsaved
    assert (typed.profile, typed._password) == ("P", "typed-in-the-form")
    store.set(secrets.PASSWORD, "stored")
    assert build(anmelden, store)._password == "stored"
    assert build(Settings(connection="outlook"), store).profile == ""  # no Anmelden: the running Outlook


# --- off Windows --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("connection", "label"), [("windows", "Simple MAPI"), ("outlook", "Outlook")])
def test_off_windows_test_connection_and_send_exit_1_and_every_mail_stays_pending(
    connection: str, label: str, cli: Cli, home: Home, tmp_path: Path
) -> None:
    for key, value in (("connection", connection), ("sender.address", "buchhaltung@mueller.example")):
        assert cli("config", "set", key, value).code == 0
    result = cli("test-connection", "--json")
    data = json.loads(result.out)
    assert (result.code, data["ok"], data["stage"]) == (1, False, "connect")
    assert "works on Windows only" in data["error"] and label in data["error"]
    for n in (1, 2):
        pdf = write_letter(tmp_path / f"Avis_{n}.pdf", f"Z-{n}")
        queued = cli(
            "enqueue", "--type", "payment-advice", "--to", f"kunde{n}@kunde.example", "--attach", str(pdf),
            "--var", "customer_name=Ärger", "--var", f"document_number=Z-{n}",
        )  # fmt: skip
        assert queued.code == 0, queued.err
    result = cli("--lang", "de", "send", "--json")
    assert result.code == 1
    assert "funktioniert nur unter Windows" in json.loads(result.out)["stopped"]
    assert "funktioniert nur unter Windows" in result.err
    rows = json.loads(cli("queue", "--json").out)
    assert [(r["status"], r["attempts"]) for r in rows] == [("pending", 0), ("pending", 0)]
