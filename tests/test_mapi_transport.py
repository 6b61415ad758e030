"""Windows-Standard (Simple MAPI) on Linux: the real ctypes marshalling against a stand-in for mapi32.

The stand-in (tests/stubs/mapi32_stub.c) is built here with the system's C compiler, declares the structures
with the Windows 64-bit layout in fixed-width types, records every field it receives and returns the code the
test chooses. It is loaded through the transport's own loader (``load_mapi``), only with another path.
"""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from opos_tui.services.dispatcher import Dispatcher
from opos_tui.services.errors import Category, TransportUnavailable
from opos_tui.services.home import Home
from opos_tui.services.queue import Status, open_queue
from opos_tui.services.secrets import open_store
from opos_tui.services.settings import Settings
from opos_tui.services.transports import mapi
from opos_tui.services.transports.base import HandshakeEvent, Stage
from opos_tui.services.transports.mailprogram import Attachment, attachment_files
from opos_tui.services.transports.mapi import CODES, MapiDeclined, MapiTransport, load_mapi
from opos_tui.services.transports.mapi_structs import MapiFileDesc, MapiMessage, MapiRecipDesc
from opos_tui.services.transports.registry import build_transport
from tests.mailprograms import BCC, CC, SUBJECT, rendered_mail

STUB = Path(__file__).parent / "stubs" / "mapi32_stub.c"


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The stand-in built twice: with MAPISendMailW (Windows 8 and later) and with MAPISendMail only."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler (gcc or cc) to build the mapi32 stand-in")
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("the stand-in has the 64-bit layout; this Python is 32-bit")
    folder = tmp_path_factory.mktemp("mapi32")
    built = {}
    for kind, flags in (("unicode", ["-DWITH_UNICODE"]), ("ansi", [])):
        target = folder / f"mapi32_{kind}.so"
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", *flags, "-o", str(target), str(STUB)],
            check=True,
        )
        built[kind] = target
    return built


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "mapi-calls.jsonl"
    monkeypatch.setenv("MAPI_STUB_LOG", str(path))
    return path


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def utf16(units: list[int]) -> str:
    return b"".join(u.to_bytes(2, "little") for u in units).decode("utf-16-le")


async def test_the_structures_have_the_windows_64_bit_layout_on_both_sides(
    stubs: dict[str, Path], log: Path, home: Home, tmp_path: Path
) -> None:
    assert (ctypes.sizeof(MapiMessage), ctypes.sizeof(MapiRecipDesc), ctypes.sizeof(MapiFileDesc)) == (96, 40, 40)
    mail = rendered_mail(home, tmp_path)
    await MapiTransport(str(stubs["unicode"])).send(mail.message, mail.envelope)
    [call] = calls(log)
    assert call["sizes"] == {"message": 96, "recip": 40, "file": 40}
    for name, struct in (("message", MapiMessage), ("recip", MapiRecipDesc), ("file", MapiFileDesc)):
        ours = {field: getattr(struct, field).offset for field, _type in struct._fields_}
        assert ours == call["offsets"][name], name


async def test_mapisendmailw_gets_every_field_in_utf16(
    stubs: dict[str, Path], log: Path, home: Home, tmp_path: Path
) -> None:
    mail = rendered_mail(home, tmp_path)
    result = await MapiTransport(str(stubs["unicode"])).send(mail.message, mail.envelope)
    assert "accepted by the mail program" in result.reply and "delivery is not confirmed" in result.reply
    [call] = calls(log)
    assert call["function"] == "MAPISendMailW"
    assert (call["session"], call["ui_param"], call["flags"], call["reserved"]) == (0, 0, 1, 0)  # MAPI_LOGON_UI
    message = call["message"]
    assert utf16(message["subject"]) == SUBJECT
    # The umlauts as single UTF-16 code units: Ä U+00C4, ö U+00F6, the dash U+2013, the euro sign U+20AC.
    start = SUBJECT.index("Ärger")
    assert message["subject"][start : start + 5] == [0xC4, 0x72, 0x67, 0x65, 0x72]
    assert {0xF6, 0x2013} <= set(message["subject"])
    assert utf16(message["note"]) == "Sehr geehrter Herr Ärger,\r\nbitte überweisen Sie 1.234,56 € bis zum 31.12.\r\n"
    assert 0x20AC in message["note"]
    assert (message["message_type"], message["date_received"], message["conversation_id"]) == (None, None, None)
    assert (message["ulReserved"], message["flFlags"], message["originator_null"]) == (0, 0, True)
    assert (message["nRecipCount"], message["nFileCount"]) == (3, 2)
    recips = [(r["class"], utf16(r["name"]), utf16(r["address"])) for r in call["recips"]]
    assert recips == [
        (1, "Jörg Ärger", "SMTP:joerg@kunde.example"),  # MAPI_TO
        (2, CC, f"SMTP:{CC}"),  # MAPI_CC
        (3, BCC, f"SMTP:{BCC}"),  # MAPI_BCC: the archive copy, in the envelope only
    ]
    assert all((r["ulReserved"], r["eid_size"], r["entry_null"]) == (0, 0, True) for r in call["recips"])
    paths = [Path(utf16(f["path"])) for f in call["files"]]
    assert [utf16(f["name"]) for f in call["files"]] == [p.name for p in mail.pdfs]
    assert [p.name for p in paths] == [p.name for p in mail.pdfs]
    for file, path, pdf in zip(call["files"], paths, mail.pdfs, strict=True):
        assert path.is_absolute()
        assert (file["nPosition"], file["flFlags"], file["ulReserved"], file["type_null"]) == (0xFFFFFFFF, 0, 0, True)
        # Readable while the call ran, with the queue's own copy of the PDF; removed afterwards.
        assert (file["readable"], file["size"], bytes(file["head"])) == (True, pdf.stat().st_size, b"%PDF-")
        assert not path.exists() and not path.parent.parent.exists()


async def test_without_mapisendmailw_the_ansi_structures_go_to_mapisendmail(
    stubs: dict[str, Path], log: Path, home: Home, tmp_path: Path
) -> None:
    mail = rendered_mail(home, tmp_path)
    await MapiTransport(str(stubs["ansi"]), ansi_codec="cp1252").send(mail.message, mail.envelope)
    [call] = calls(log)
    assert call["function"] == "MAPISendMail"
    assert bytes(call["message"]["subject"]).decode("cp1252") == SUBJECT
    assert 0xC4 in call["message"]["subject"]  # Ä in code page 1252
    assert [bytes(r["address"]) for r in call["recips"]] == [
        b"SMTP:joerg@kunde.example",
        f"SMTP:{CC}".encode(),
        f"SMTP:{BCC}".encode(),
    ]
    assert [bytes(f["name"]).decode("cp1252") for f in call["files"]] == [p.name for p in mail.pdfs]
    assert all(f["nPosition"] == 0xFFFFFFFF for f in call["files"])


EXPECTED: dict[int, Category] = {
    1: Category.INTERACTION,
    **dict.fromkeys((2, 3, 6, 7, 15, 26, 27), Category.CONFIGURATION),
    **dict.fromkeys((4, 5, 8, 11, 12, 13, 19, 22, 23), Category.TRANSIENT),
    **dict.fromkeys((9, 10, 14, 16, 17, 18, 20, 21, 24, 25, 28), Category.PERMANENT),
}


def test_every_return_code_has_a_category_and_a_message_in_both_languages() -> None:
    assert set(CODES) == set(range(1, 29)) == set(EXPECTED)
    for code, (name, _cls, en, de) in CODES.items():
        error = mapi.mapi_error(code, "MAPISendMailW")
        assert error.category is EXPECTED[code], name
        assert en in error.en and de in error.de and f"{code} {name}" in error.en


@pytest.mark.parametrize("code", range(29))
async def test_each_return_code_of_the_call_is_mapped(
    code: int, stubs: dict[str, Path], log: Path, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAPI_STUB_RC", str(code))
    mail = rendered_mail(home, tmp_path)
    transport = MapiTransport(str(stubs["unicode"]))
    if code == 0:
        assert "SUCCESS_SUCCESS" in (await transport.send(mail.message, mail.envelope)).reply
        return
    with pytest.raises(mapi.OposError) as raised:
        await transport.send(mail.message, mail.envelope)
    assert raised.value.category is EXPECTED[code]
    assert f"MAPISendMailW: {code} " in raised.value.en
    assert calls(log)[-1]["code"] == code


async def test_the_operators_no_stops_the_run_and_the_mail_stays_pending(
    stubs: dict[str, Path], log: Path, home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAPI_STUB_RC", "1")  # MAPI_E_USER_ABORT: "No" in the mail program's prompt
    mail = rendered_mail(home, tmp_path)
    with open_queue(home) as queue:
        result = await Dispatcher(queue, lambda: MapiTransport(str(stubs["unicode"]))).run()
        assert isinstance(result.stopped, MapiDeclined)
        assert (result.sent, result.failed, result.deferred, result.uncertain) == ([], [], [], [])
        assert queue.get(mail.item_id).status is Status.PENDING
    assert calls(log)[-1]["function"] == "MAPISendMailW"
    assert "declined" in result.stopped.en and "abgelehnt" in result.stopped.de


async def test_connect_logs_on_to_the_default_profile_without_a_prompt_and_sends_nothing(
    stubs: dict[str, Path], log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[HandshakeEvent] = []
    lookup = lambda: ("Microsoft Outlook", "Outlook")  # noqa: E731 (the registry, read on Windows)
    transport = MapiTransport(str(stubs["unicode"]), lookup=lookup, observer=events.append)
    await transport.connect()
    assert [(e.stage, e.status) for e in events] == [(Stage.CONNECT, "ok"), (Stage.SIGN_IN, "ok")]
    assert "MAPISendMailW (Unicode)" in events[0].summary and "Microsoft Outlook" in events[0].summary
    assert "Outlook profile: Outlook" in events[1].summary
    logon, logoff = calls(log)
    assert logon["function"] == "MAPILogon" and logon["flags"] == 0  # no MAPI_LOGON_UI: never a dialog
    assert (logon["profile_null"], logon["password_null"]) == (True, True)
    assert logoff == {"function": "MAPILogoff", "session": 0x5E55, "ui_param": 0, "flags": 0, "reserved": 0}
    monkeypatch.setenv("MAPI_STUB_LOGON_RC", "3")
    with pytest.raises(mapi.OposError, match="MAPI_E_LOGIN_FAILURE") as raised:
        await MapiTransport(str(stubs["unicode"]), lookup=lookup).connect()
    assert raised.value.category is Category.CONFIGURATION
    assert not any(c["function"].startswith("MAPISendMail") for c in calls(log))


def test_attachments_go_to_a_private_folder_and_are_removed_even_after_an_error() -> None:
    with (
        pytest.raises(RuntimeError),
        attachment_files([Attachment("a/b.pdf", b"%PDF-1"), Attachment("b.pdf", b"")]) as paths,
    ):
        folder = paths[0].parent.parent
        assert folder.stat().st_mode & 0o777 == 0o700
        assert [p.stat().st_mode & 0o777 for p in paths] == [0o600, 0o600]
        assert [p.name for p in paths] == ["a_b.pdf", "b.pdf"]
        raise RuntimeError("the mail program failed")
    assert not folder.exists()


async def test_off_windows_the_system_mapi_is_never_loaded(home: Home) -> None:
    with pytest.raises(TransportUnavailable, match="works on Windows only"):
        load_mapi()
    with pytest.raises(TransportUnavailable, match="works on Windows only") as raised:
        build_transport(Settings(connection="windows"), open_store(home))
    assert "funktioniert nur unter Windows" in raised.value.de
