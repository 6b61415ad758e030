"""``connection = outlook``: classic Outlook through its object model (COM, pywin32: ``opos-tui[windows]``).

``Outlook.Application`` → ``CreateItem(0)`` → To/CC/BCC/Subject/Body → ``Attachments.Add(path)`` → ``Send()``.
With Anmelden (``auth.method = password``) Profil is the Outlook (MAPI) profile and Passwort its password:
``GetNamespace("MAPI").Logon(profile, password, False, True)``; without it the running Outlook or its default
profile is used. The mail goes from the profile's default account. Success means Outlook took the mail into
its outbox, not that it was delivered.

Outlook's object model guard may ask "A program is trying to send an e-mail message on your behalf" for each
mail when Windows reports no current antivirus program (Trust Center > Programmatic Access). The calls block
meanwhile, so they run in a worker thread of their own: COM objects belong to the thread that made them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from opos_tui.i18n import tr
from opos_tui.services.errors import (
    Category,
    ConfigError,
    ConfigurationFault,
    OposError,
    PermanentError,
    TransientError,
    TransportUnavailable,
)
from opos_tui.services.secrets import PASSWORD, SecretStore
from opos_tui.services.transports.base import Envelope, Observer, SendResult, Stage, Then, TokenProvider
from opos_tui.services.transports.kinds import PROMPT_DE, PROMPT_EN
from opos_tui.services.transports.mailprogram import LocalSession, ParsedMail, attachment_files, parse_mail

if TYPE_CHECKING:
    from opos_tui.services.settings import Settings

LABEL = "Outlook (Extended MAPI)"
OL_MAIL_ITEM = 0

Dispatch = Callable[[str], Any]
"""``win32com.client.Dispatch``: the one boundary to COM; tests give a fake."""
T = TypeVar("T")

# HRESULTs worth their own message (as unsigned 32-bit numbers).
E_ABORT = 0x80004004
"""The operator denied access in the object model guard's prompt."""
E_ACCESSDENIED = 0x80070005
CO_E_CLASSSTRING = 0x800401F3
"""No ``Outlook.Application`` registered: classic Outlook is not installed (the new Outlook has no COM)."""
REGDB_E_CLASSNOTREG = 0x80040154
CO_E_SERVER_EXEC_FAILURE = 0x80080005
"""Outlook runs with other rights (as administrator) than this program, or could not start."""
RPC_E_CALL_REJECTED = 0x80010001
RPC_E_SERVERCALL_RETRYLATER = 0x8001010A
"""Outlook is busy (a dialog is open)."""
MAPI_E_LOGON_FAILED = 0x80040111
MAPI_E_NOT_FOUND = 0x8004010F


class OutlookDeclined(OposError):
    """Access was denied in Outlook's prompt: the operator's "no"; the mail stays pending."""

    category = Category.INTERACTION


def hresults(exc: BaseException) -> set[int]:
    """The HRESULTs of a ``pywintypes.com_error`` (its own and the one in its exception info), unsigned."""
    found: set[int] = set()
    args = exc.args
    candidates = [getattr(exc, "hresult", None), args[0] if args else None]
    if len(args) > 2 and isinstance(args[2], tuple) and len(args[2]) > 5:
        candidates.append(args[2][5])
    for value in candidates:
        if isinstance(value, int):
            found.add(value & 0xFFFFFFFF)
    return found


def describe(exc: BaseException) -> str:
    """What COM said, on one line: the exception info's description, else the error's own text."""
    args = exc.args
    if len(args) > 2 and isinstance(args[2], tuple) and len(args[2]) > 2 and args[2][2]:
        text = str(args[2][2])
    elif len(args) > 1 and args[1]:
        text = str(args[1])
    else:
        text = str(exc)
    codes = ", ".join(f"0x{code:08X}" for code in sorted(hresults(exc)))
    return " ".join(text.split()) + (f" ({codes})" if codes else "")


Step = tuple[str, str]
"""What was being done, in English and German (accusative, the same as nominative: neuter or feminine)."""
STARTING: Step = ("starting Outlook", "das Starten von Outlook")
LOGON: Step = ("the logon", "die Anmeldung")
READING: Step = ("reading the profile", "das Lesen des Profils")
MAIL: Step = ("the mail", "die Mail")


def com_error(exc: BaseException, step: Step) -> OposError:
    """The error for a failed COM call, by its HRESULT."""
    codes = hresults(exc)
    said = describe(exc)
    doing, doing_de = step
    if codes & {E_ABORT, E_ACCESSDENIED}:
        return OutlookDeclined(
            f"Outlook refused {doing}: access was denied in its prompt ({said}). The mail stays pending. " + PROMPT_EN,
            f"Outlook verweigerte {doing_de}: der Zugriff wurde in seiner Rückfrage abgelehnt ({said}). Die Mail "
            "wartet weiter. " + PROMPT_DE,
        )
    if codes & {CO_E_CLASSSTRING, REGDB_E_CLASSNOTREG}:
        return TransportUnavailable(
            f"Classic Outlook is not installed on this computer ({said}). The new Outlook has no interface for "
            "other programs: use connection smtp, or install classic Outlook (Microsoft 365 Apps or Office).",
            f"Das klassische Outlook ist auf diesem Rechner nicht installiert ({said}). Das neue Outlook hat "
            "keine Schnittstelle für andere Programme: bitte connection smtp verwenden oder das klassische "
            "Outlook installieren (Microsoft 365 Apps oder Office).",
        )
    if CO_E_SERVER_EXEC_FAILURE in codes:
        return ConfigurationFault(
            f"Outlook could not be started for {doing} ({said}). It may be running as administrator while "
            "opos-tui is not, or the other way round: run both with the same rights.",
            f"Outlook ließ sich für {doing_de} nicht starten ({said}). Vielleicht läuft es als Administrator und "
            "opos-tui nicht, oder umgekehrt: bitte beide mit denselben Rechten starten.",
        )
    if codes & {RPC_E_CALL_REJECTED, RPC_E_SERVERCALL_RETRYLATER}:
        return TransientError(
            f"Outlook is busy (a window or dialog may be open) and did not take {doing} ({said}).",
            f"Outlook ist beschäftigt (vielleicht ist ein Fenster oder Dialog offen) und nahm {doing_de} nicht an "
            f"({said}).",
        )
    if codes & {MAPI_E_LOGON_FAILED, MAPI_E_NOT_FOUND}:
        return ConfigurationFault(
            f"Outlook could not log on to the profile ({said}). Check Profil (auth.profile, the Outlook profile "
            "name as in Control Panel > Mail > Show Profiles) and Passwort.",
            f"Outlook konnte sich nicht am Profil anmelden ({said}). Bitte Profil (auth.profile, der Name des "
            "Outlook-Profils wie unter Systemsteuerung > E-Mail > Profile anzeigen) und Passwort prüfen.",
        )
    if step is MAIL:
        return PermanentError(f"Outlook did not take the mail: {said}.", f"Outlook nahm die Mail nicht an: {said}.")
    return ConfigurationFault(
        f"Outlook failed at {doing}: {said}.", f"{doing_de[0].upper()}{doing_de[1:]} schlug in Outlook fehl: {said}."
    )


def _pywin32() -> tuple[Dispatch, Callable[[], None]]:
    """``win32com.client.Dispatch`` and the per-thread COM set-up, imported only when Outlook is used."""
    try:
        import pythoncom
        import win32com.client
    except ImportError as exc:
        raise TransportUnavailable(
            "Connection type outlook needs pywin32, which is not installed: pip install 'opos-tui[windows]'.",
            "Die Verbindungsart outlook braucht pywin32, das nicht installiert ist: pip install 'opos-tui[windows]'.",
            str(exc),
        ) from exc
    dispatch: Dispatch = win32com.client.Dispatch
    initialize: Callable[[], None] = pythoncom.CoInitialize
    return dispatch, initialize


_ONE_AT_A_TIME = threading.Lock()
"""Outlook shows one prompt at a time: parallel connections take turns."""


def build(
    settings: Settings,
    store: SecretStore,
    *,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
    observer: Observer | None = None,
) -> OutlookTransport:
    """The registry's builder: Outlook with Anmelden as set (``password`` overrides the stored Passwort, for the
    form's test of what is typed); ConfigError when Anmelden lacks its profile or password."""
    if settings.auth.method != "password":
        return OutlookTransport(observer=observer)
    if not settings.auth.profile:
        raise ConfigError(
            "auth.method is password, but auth.profile (Profil, the Outlook profile name) is empty",
            "auth.method ist password, aber auth.profile (Profil, der Name des Outlook-Profils) ist leer",
        )
    secret = password or store.get(PASSWORD)
    if secret is None:
        raise ConfigError(
            "auth.method is password, but no password (Passwort) is stored: opos-tui config set-password",
            "auth.method ist password, aber kein Passwort gespeichert: opos-tui config set-password",
        )
    return OutlookTransport(settings.auth.profile, secret, observer=observer)


class OutlookTransport(LocalSession):
    """Hands each mail to classic Outlook; implements ``transports.base.Transport``."""

    def __init__(
        self,
        profile: str = "",
        password: str | None = None,
        *,
        dispatch: Dispatch | None = None,
        com_init: Callable[[], None] | None = None,
        observer: Observer | None = None,
    ) -> None:
        super().__init__(observer)
        self.profile = profile
        self._password = password
        self._dispatch = dispatch
        self._com_init = com_init
        self._thread: ThreadPoolExecutor | None = None
        self._initialized = False
        self._outlook: Any = None

    async def _in_thread(self, work: Callable[[], T]) -> T:
        """Run ``work`` in this session's one COM thread (COM objects belong to the thread that made them)."""
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, "outlook")
        return await asyncio.get_running_loop().run_in_executor(self._thread, work)

    # --- in the COM thread ----------------------------------------------------------------------------

    def _application(self) -> Any:
        if not self._initialized:
            if self._dispatch is None:
                self._dispatch, self._com_init = _pywin32()
            if self._com_init is not None:
                self._com_init()
            self._initialized = True
        if self._outlook is None:
            assert self._dispatch is not None
            try:
                self._outlook = self._dispatch("Outlook.Application")
            except Exception as exc:
                raise com_error(exc, STARTING) from exc
        return self._outlook

    def _version(self) -> str:
        try:
            return str(self._application().Version)
        except OposError:
            raise
        except Exception as exc:
            raise com_error(exc, STARTING) from exc

    def _logon(self) -> tuple[str, list[str]]:
        """Log on (with Anmelden) and read the profile's name and its accounts."""
        outlook = self._application()
        try:
            namespace = outlook.GetNamespace("MAPI")
            if self.profile:
                namespace.Logon(self.profile, self._password, False, True)
        except Exception as exc:
            raise com_error(exc, LOGON) from exc
        try:
            accounts = namespace.Accounts
            names = [str(accounts.Item(i).DisplayName) for i in range(1, int(accounts.Count) + 1)]
            return str(namespace.CurrentProfileName), names
        except Exception as exc:
            raise com_error(exc, READING) from exc

    def _send(self, mail: ParsedMail) -> None:
        outlook = self._application()
        with attachment_files(mail.attachments) as paths, _ONE_AT_A_TIME:
            try:
                item = outlook.CreateItem(OL_MAIL_ITEM)
                item.To = "; ".join(r.address for r in mail.to)
                item.CC = "; ".join(r.address for r in mail.cc)
                item.BCC = "; ".join(r.address for r in mail.bcc)
                item.Subject = mail.subject
                item.Body = mail.body
                for path in paths:  # the file has the attachment's own name: Outlook shows that
                    item.Attachments.Add(str(path))
                item.Send()
            except Exception as exc:
                raise com_error(exc, MAIL) from exc

    # --- the Transport interface ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Start (or reach) Outlook, log on as set and read the profile and its accounts; nothing is sent."""
        self._at(Stage.CONNECT)
        version = await self._in_thread(self._version)
        self._report(Stage.CONNECT, tr(f"Outlook {version} is there", f"Outlook {version} ist vorhanden"))
        self._at(Stage.SIGN_IN)
        profile, accounts = await self._in_thread(self._logon)
        listed = ", ".join(accounts) or tr("none", "keine")
        if self.profile:
            how = tr(f"logged on to profile {profile}", f"am Profil {profile} angemeldet")
        else:
            how = tr(f"the running Outlook's profile {profile}", f"Profil {profile} des laufenden Outlook")
        self._report(
            Stage.SIGN_IN,
            tr(
                f"{how}; accounts: {listed}. The profile's default account sends.",
                f"{how}; Konten: {listed}. Es sendet das Standardkonto des Profils.",
            ),
        )

    async def send(
        self, message: bytes, envelope: Envelope, ready: Awaitable[None] | None = None, then: Then | None = None
    ) -> SendResult:
        if ready is not None:
            await ready
        self._at(Stage.SEND)
        mail = parse_mail(message, envelope)
        await self._in_thread(lambda: self._send(mail))
        reply = "accepted by Outlook (MailItem.Send): it sends the mail from its outbox, delivery is not confirmed"
        self._report(Stage.SEND, reply)
        return SendResult(reply)

    async def close(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(thread, self._release)
            thread.shutdown(wait=False)

    def _release(self) -> None:
        """Drop the reference to Outlook in the thread that made it; Outlook itself keeps running."""
        self._outlook = None
