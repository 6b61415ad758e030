"""``connection = windows``: Windows-Standard, the default mail program through Simple MAPI (``mapi32.dll``).

Each mail is taken apart (``mailprogram.parse_mail``), its attachments written to a private folder, and the
whole handed to ``MAPISendMailW`` (Windows 8 and later; else ``MAPISendMail`` with the ANSI structures) of
the default mail program, with its default profile: Simple MAPI has no Anmelden. The call blocks while the
mail program shows its security prompt ("A program is trying to send an e-mail message on your behalf"), so
it runs in a worker thread. Success means the mail program accepted the mail (into its outbox), not that it
was delivered; the reply recorded for the mail says so. Every return code has its message and category;
``MAPI_E_USER_ABORT`` is the operator's "no" in that prompt: the run stops and the mail stays pending.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys
import threading
from collections.abc import Awaitable, Callable

from opos_tui.i18n import tr
from opos_tui.services.errors import Category, ConfigurationFault, OposError, PermanentError, TransientError
from opos_tui.services.secrets import SecretStore
from opos_tui.services.settings import Settings
from opos_tui.services.transports.base import Envelope, Observer, SendResult, Stage, Then, TokenProvider
from opos_tui.services.transports.kinds import windows_only
from opos_tui.services.transports.mailprogram import (
    LocalSession,
    ParsedMail,
    Recipient,
    attachment_files,
    parse_mail,
)
from opos_tui.services.transports.mapi_structs import (
    MAPI_BCC,
    MAPI_CC,
    MAPI_LOGON_UI,
    MAPI_TO,
    NO_POSITION,
    SUCCESS_SUCCESS,
    MapiFileDesc,
    MapiMessage,
    MapiRecipDesc,
    Strings,
    declare,
    declare_logon,
)

LABEL = "Windows-Standard (Simple MAPI)"
LIBRARY = "mapi32.dll"


class MapiDeclined(OposError):
    """The operator answered "no" (or closed the mail program's prompt): nothing was sent, nothing failed."""

    category = Category.INTERACTION


_PROMPT_EN = (
    " If the mail program asked whether a program may send e-mail on your behalf, it must be answered with Allow."
)
_PROMPT_DE = (
    " Hat das Mailprogramm gefragt, ob ein Programm in Ihrem Namen E-Mails senden darf, muss die Frage mit"
    " Zulassen beantwortet werden."
)

# Return code -> (name, error class, English, German). 7 is not defined by Simple MAPI.
CODES: dict[int, tuple[str, type[OposError], str, str]] = {
    1: ("MAPI_E_USER_ABORT", MapiDeclined,
        "Sending was declined in the mail program (its prompt was answered with No or closed). The mail stays "
        "pending; send again and allow it.",
        "Das Senden wurde im Mailprogramm abgelehnt (die Rückfrage mit Nein beantwortet oder geschlossen). Die "
        "Mail wartet weiter; erneut senden und zulassen."),
    2: ("MAPI_E_FAILURE", ConfigurationFault,
        "The mail program reported a general failure. Start it once by hand and check that it is the default "
        "mail program, and that it and opos-tui run as the same user with the same rights (both as "
        "administrator, or neither).",
        "Das Mailprogramm meldet einen allgemeinen Fehler. Bitte es einmal von Hand starten und prüfen, ob es das "
        "Standard-Mailprogramm ist und ob es und opos-tui als derselbe Benutzer mit denselben Rechten laufen "
        "(beide als Administrator oder keines)."),
    3: ("MAPI_E_LOGIN_FAILURE", ConfigurationFault,
        "The mail program could not log on to its profile. Start it by hand, set up or choose the default "
        "profile, and try again.",
        "Das Mailprogramm konnte sich nicht an seinem Profil anmelden. Bitte es von Hand starten, das "
        "Standardprofil einrichten oder wählen und erneut versuchen."),
    4: ("MAPI_E_DISK_FULL", TransientError,
        "The mail program's disk is full.", "Der Datenträger des Mailprogramms ist voll."),
    5: ("MAPI_E_INSUFFICIENT_MEMORY", TransientError,
        "The mail program ran out of memory.", "Dem Mailprogramm fehlt Arbeitsspeicher."),
    6: ("MAPI_E_ACCESS_DENIED", ConfigurationFault,
        "The mail program denied access." + _PROMPT_EN,
        "Das Mailprogramm verweigert den Zugriff." + _PROMPT_DE),
    7: ("(undefined)", ConfigurationFault,
        "The mail program returned code 7, which Simple MAPI does not define.",
        "Das Mailprogramm gab den Code 7 zurück, den Simple MAPI nicht kennt."),
    8: ("MAPI_E_TOO_MANY_SESSIONS", TransientError,
        "The mail program has too many sessions open.", "Das Mailprogramm hat zu viele Sitzungen offen."),
    9: ("MAPI_E_TOO_MANY_FILES", PermanentError,
        "The mail has more attachments than the mail program takes.",
        "Die Mail hat mehr Anhänge, als das Mailprogramm annimmt."),
    10: ("MAPI_E_TOO_MANY_RECIPIENTS", PermanentError,
         "The mail has more recipients than the mail program takes.",
         "Die Mail hat mehr Empfänger, als das Mailprogramm annimmt."),
    11: ("MAPI_E_ATTACHMENT_NOT_FOUND", TransientError,
         "The mail program did not find an attachment file (an antivirus program may have removed it).",
         "Das Mailprogramm fand eine Anhangsdatei nicht (vielleicht hat ein Virenschutz sie entfernt)."),
    12: ("MAPI_E_ATTACHMENT_OPEN_FAILURE", TransientError,
         "The mail program could not open an attachment file (an antivirus program may hold it).",
         "Das Mailprogramm konnte eine Anhangsdatei nicht öffnen (vielleicht hält ein Virenschutz sie)."),
    13: ("MAPI_E_ATTACHMENT_WRITE_FAILURE", TransientError,
         "The mail program could not store an attachment.", "Das Mailprogramm konnte einen Anhang nicht speichern."),
    14: ("MAPI_E_UNKNOWN_RECIPIENT", PermanentError,
         "The mail program does not know a recipient address.",
         "Das Mailprogramm kennt eine Empfängeradresse nicht."),
    15: ("MAPI_E_BAD_RECIPTYPE", ConfigurationFault,
         "The mail program does not take one of the recipient kinds (To, Cc, Bcc); most often it takes no blind "
         "copy. Clear sender.bcc (the archive copy) or use another connection type.",
         "Das Mailprogramm nimmt eine der Empfängerarten (An, Cc, Bcc) nicht an; meist keine Blindkopie. Bitte "
         "sender.bcc (die Archivkopie) leeren oder eine andere Verbindungsart verwenden."),
    16: ("MAPI_E_NO_MESSAGES", PermanentError,
         "The mail program found no message to send.", "Das Mailprogramm fand keine zu sendende Nachricht."),
    17: ("MAPI_E_INVALID_MESSAGE", PermanentError,
         "The mail program refused the mail as invalid.", "Das Mailprogramm lehnte die Mail als ungültig ab."),
    18: ("MAPI_E_TEXT_TOO_LARGE", PermanentError,
         "The mail's text is too long for the mail program.", "Der Text der Mail ist dem Mailprogramm zu lang."),
    19: ("MAPI_E_INVALID_SESSION", TransientError,
         "The mail program's session ended.", "Die Sitzung des Mailprogramms ist beendet."),
    20: ("MAPI_E_TYPE_NOT_SUPPORTED", PermanentError,
         "The mail program does not take this kind of message.",
         "Das Mailprogramm nimmt diese Art von Nachricht nicht an."),
    21: ("MAPI_E_AMBIGUOUS_RECIPIENT", PermanentError,
         "A recipient matches more than one entry of the mail program's address book.",
         "Ein Empfänger passt zu mehreren Einträgen im Adressbuch des Mailprogramms."),
    22: ("MAPI_E_MESSAGE_IN_USE", TransientError,
         "The mail program has the message in use.", "Das Mailprogramm verwendet die Nachricht gerade."),
    23: ("MAPI_E_NETWORK_FAILURE", TransientError,
         "The mail program has no connection to its mail server.",
         "Das Mailprogramm hat keine Verbindung zu seinem Mailserver."),
    24: ("MAPI_E_INVALID_EDITFIELDS", PermanentError,
         "The mail program refused the fields of the mail.", "Das Mailprogramm lehnte die Felder der Mail ab."),
    25: ("MAPI_E_INVALID_RECIPS", PermanentError,
         "The mail program refused the recipients as invalid.",
         "Das Mailprogramm lehnte die Empfänger als ungültig ab."),
    26: ("MAPI_E_NOT_SUPPORTED", ConfigurationFault,
         "The default mail program does not support sending through Simple MAPI. Make a MAPI mail program such as "
         "classic Outlook the default, or use another connection type.",
         "Das Standard-Mailprogramm unterstützt das Senden über Simple MAPI nicht. Bitte ein MAPI-Mailprogramm wie "
         "das klassische Outlook als Standard einstellen oder eine andere Verbindungsart verwenden."),
    27: ("MAPI_E_UNICODE_NOT_SUPPORTED", ConfigurationFault,
         "The mail program does not take Unicode text.", "Das Mailprogramm nimmt keinen Unicode-Text an."),
    28: ("MAPI_E_ATTACHMENT_TOO_LARGE", PermanentError,
         "An attachment is too large for the mail program.", "Ein Anhang ist dem Mailprogramm zu groß."),
}  # fmt: skip


def mapi_error(code: int, function: str) -> OposError:
    """The error for a Simple MAPI return code other than 0; codes above 28 are reported as unknown."""
    name, cls, en, de = CODES.get(
        code,
        (
            "(unknown)",
            ConfigurationFault,
            f"The mail program returned code {code}, which Simple MAPI does not define.",
            f"Das Mailprogramm gab den Code {code} zurück, den Simple MAPI nicht kennt.",
        ),
    )
    return cls(f"{en} ({function}: {code} {name})", f"{de} ({function}: {code} {name})", f"{function} {code}")


def load_mapi(path: str | None = None) -> ctypes.CDLL:
    """Load Simple MAPI: ``mapi32.dll`` on Windows (the stub that forwards to the default mail program), or
    the library at ``path`` (a stand-in for tests elsewhere). The one place a library is loaded."""
    if sys.platform == "win32":
        return ctypes.WinDLL(path or LIBRARY)  # FAR PASCAL: stdcall on 32-bit Windows
    if path is None:
        raise windows_only("windows")
    return ctypes.CDLL(path)


def _registry(path: str, value: str = "") -> str | None:
    """A string from the current user's registry, else the machine's; None off Windows or if absent."""
    if sys.platform != "win32":
        return None
    import winreg

    for root in (winreg.HKEY_CURRENT_USER, winreg.HKEY_LOCAL_MACHINE):
        try:
            with winreg.OpenKey(root, path) as key:
                found, _kind = winreg.QueryValueEx(key, value)
        except OSError:
            continue
        if isinstance(found, str) and found:
            return found
    return None


def default_mail_program() -> tuple[str | None, str | None]:
    """The default mail program's name and (for Outlook) its default profile, from the registry."""
    program = _registry(r"Software\Clients\Mail")
    profile = next(
        (p for v in ("16.0", "15.0") if (p := _registry(rf"Software\Microsoft\Office\{v}\Outlook", "DefaultProfile"))),
        None,
    )
    return program, profile


_ONE_AT_A_TIME = threading.Lock()
"""A mail program shows one prompt at a time: parallel connections take turns."""


def build(
    settings: Settings,
    store: SecretStore,
    *,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
    observer: Observer | None = None,
) -> MapiTransport:
    """The registry's builder. No setting applies: Simple MAPI uses the default mail program with its default
    profile (no Anmelden)."""
    return MapiTransport(observer=observer)


class MapiTransport(LocalSession):
    """Hands each mail to the default mail program through Simple MAPI; implements ``Transport``."""

    def __init__(
        self,
        library: str | None = None,
        *,
        ansi_codec: str = "mbcs" if sys.platform == "win32" else "cp1252",
        lookup: Callable[[], tuple[str | None, str | None]] = default_mail_program,
        observer: Observer | None = None,
    ) -> None:
        super().__init__(observer)
        self.library = library
        """Path of the library to load; None = the system's ``mapi32.dll``."""
        self.ansi_codec = ansi_codec
        """The code page of the old ANSI ``MAPISendMail`` (the system's, ``mbcs``)."""
        self.lookup = lookup
        self._dll: ctypes.CDLL | None = None

    def _library(self) -> ctypes.CDLL:
        if self._dll is None:
            try:
                self._dll = load_mapi(self.library)
            except OSError as exc:
                raise ConfigurationFault(
                    f"Simple MAPI ({self.library or LIBRARY}) cannot be loaded: {exc}. Install a MAPI mail program "
                    "such as classic Outlook and make it the default mail program, or use another connection type.",
                    f"Simple MAPI ({self.library or LIBRARY}) lässt sich nicht laden: {exc}. Bitte ein "
                    "MAPI-Mailprogramm wie das klassische Outlook installieren und als Standard-Mailprogramm "
                    "einstellen, oder eine andere Verbindungsart verwenden.",
                ) from exc
        return self._dll

    async def connect(self) -> None:
        """Load Simple MAPI and check that the default profile logs on without a prompt (then log off again);
        nothing is shown or sent. Each mail then goes with the mail program's own session."""
        self._at(Stage.CONNECT)
        unicode = await asyncio.to_thread(lambda: declare(self._library())[0])
        program, profile = self.lookup()
        function = "MAPISendMailW (Unicode)" if unicode else f"MAPISendMail (ANSI, {self.ansi_codec})"
        unknown = tr("unknown", "unbekannt")
        where = self.library or LIBRARY
        self._report(
            Stage.CONNECT,
            tr(f"Simple MAPI loaded ({where}): {function}; default mail program: {program or unknown}",
               f"Simple MAPI geladen ({where}): {function}; Standard-Mailprogramm: {program or unknown}"),
        )  # fmt: skip
        self._at(Stage.SIGN_IN)
        await asyncio.to_thread(self._logon)
        self._report(
            Stage.SIGN_IN,
            tr(f"The default profile logs on without a prompt (Outlook profile: {profile or unknown}). Each mail "
               "may still need Allow in the mail program's security prompt.",
               f"Das Standardprofil meldet sich ohne Rückfrage an (Outlook-Profil: {profile or unknown}). Jede "
               "Mail kann trotzdem ein Zulassen in der Sicherheitsabfrage des Mailprogramms brauchen."),
        )  # fmt: skip

    def _logon(self) -> None:
        logon, logoff = declare_logon(self._library())
        session = ctypes.c_size_t(0)
        with _ONE_AT_A_TIME:
            code = logon(0, None, None, 0, 0, ctypes.byref(session))  # no MAPI_LOGON_UI: never a dialog here
            if code != SUCCESS_SUCCESS:
                raise mapi_error(code, "MAPILogon")
            logoff(session, 0, 0, 0)

    async def close(self) -> None:
        """Nothing stays open: each mail is one call, with the mail program's own session."""

    async def send(
        self, message: bytes, envelope: Envelope, ready: Awaitable[None] | None = None, then: Then | None = None
    ) -> SendResult:
        if ready is not None:
            await ready
        self._at(Stage.SEND)
        mail = parse_mail(message, envelope)
        # The call blocks while the mail program asks the operator: in a worker thread, the screen stays alive.
        function, code = await asyncio.to_thread(self._send, mail)
        if code != SUCCESS_SUCCESS:
            raise mapi_error(code, function)
        reply = (
            f"accepted by the mail program through Simple MAPI ({function} returned 0 SUCCESS_SUCCESS); it sends "
            "the mail from its outbox, delivery is not confirmed"
        )
        self._report(Stage.SEND, reply)
        return SendResult(reply)

    def _send(self, mail: ParsedMail) -> tuple[str, int]:
        """Write the attachments, make the call, remove the attachments: all in this worker thread, so the
        files stay until the mail program has taken them even if the run is interrupted meanwhile."""
        library = self._library()
        unicode, send = declare(library)
        strings = Strings(unicode, self.ansi_codec)
        with attachment_files(mail.attachments, strings.fits) as paths:
            recipients = [
                *((r, MAPI_TO) for r in mail.to),
                *((r, MAPI_CC) for r in mail.cc),
                *((r, MAPI_BCC) for r in mail.bcc),
            ]
            recips = (MapiRecipDesc * max(len(recipients), 1))()
            for slot, (recipient, kind) in zip(recips, recipients, strict=False):
                _recipient(slot, recipient, kind, strings)
            files = (MapiFileDesc * max(len(paths), 1))()
            for slot, path, attachment in zip(files, paths, mail.attachments, strict=True):
                slot.nPosition = NO_POSITION
                slot.lpszPathName = strings.pointer(str(path), strict=True)
                # Never NULL: some mail programs then show no name or crash.
                slot.lpszFileName = strings.pointer(attachment.filename or path.name)
            note = MapiMessage(
                lpszSubject=strings.pointer(mail.subject),
                lpszNoteText=strings.pointer(mail.body),
                nRecipCount=len(recipients),
                lpRecips=ctypes.addressof(recips) if recipients else None,
                nFileCount=len(paths),
                lpFiles=ctypes.addressof(files) if paths else None,
            )
            with _ONE_AT_A_TIME:
                code = send(0, 0, ctypes.byref(note), MAPI_LOGON_UI, 0)
        return ("MAPISendMailW" if unicode else "MAPISendMail"), int(code)


def _recipient(slot: MapiRecipDesc, recipient: Recipient, kind: int, strings: Strings) -> None:
    slot.ulRecipClass = kind
    slot.lpszName = strings.pointer(recipient.name or recipient.address)
    # "SMTP:" makes the mail program take the address as it is, without an address-book lookup.
    slot.lpszAddress = strings.pointer(f"SMTP:{recipient.address}")
