"""``connection = sendmail``: the local mail program of a Unix server (Postfix, Exim, OpenSMTPD, ...).

Each mail goes on the standard input of ``sendmail.path -i -f SENDER -- RECIPIENTS``, started directly,
never through a shell. Its exit status (``sysexits.h``) and what it wrote to stderr say what happened:
0 means the local mail program accepted the mail into its queue; delivery goes on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Awaitable
from pathlib import Path

from opos_tui.i18n import tr
from opos_tui.services.errors import (
    ConfigurationFault,
    DeliveryUncertain,
    OposError,
    PermanentError,
    TransientError,
)
from opos_tui.services.secrets import SecretStore
from opos_tui.services.settings import Settings
from opos_tui.services.transports.base import (
    Envelope,
    Observer,
    SendResult,
    Stage,
    Then,
    TokenProvider,
    envelope_address,
)
from opos_tui.services.transports.mailprogram import LocalSession

# sysexits.h: the status -> (name, category class, English meaning, German meaning).
_EXITS: dict[int, tuple[str, type[OposError], str, str]] = {
    64: ("EX_USAGE", ConfigurationFault, "it did not understand its options: is it really a sendmail program?",
         "es verstand seine Optionen nicht: ist es wirklich ein sendmail-Programm?"),
    65: ("EX_DATAERR", PermanentError, "it refused the mail's data", "es lehnte den Inhalt der Mail ab"),
    66: ("EX_NOINPUT", PermanentError, "it could not read the mail", "es konnte die Mail nicht lesen"),
    67: ("EX_NOUSER", PermanentError, "a recipient address is unknown", "eine Empfängeradresse ist unbekannt"),
    68: ("EX_NOHOST", PermanentError, "a recipient's domain is unknown", "die Domain eines Empfängers ist unbekannt"),
    69: ("EX_UNAVAILABLE", ConfigurationFault, "the mail service is not available (is the mail server running?)",
         "der Maildienst ist nicht verfügbar (läuft der Mailserver?)"),
    70: ("EX_SOFTWARE", TransientError, "it hit an internal error", "es hatte einen internen Fehler"),
    71: ("EX_OSERR", TransientError, "the system refused it a resource (processes, memory)",
         "das System verweigerte ihm eine Ressource (Prozesse, Speicher)"),
    72: ("EX_OSFILE", ConfigurationFault, "a system file it needs is missing or wrong",
         "eine nötige Systemdatei fehlt oder ist fehlerhaft"),
    73: ("EX_CANTCREAT", ConfigurationFault, "it cannot write into its mail queue",
         "es kann nicht in seine Mail-Warteschlange schreiben"),
    74: ("EX_IOERR", TransientError, "an input/output error occurred (disk full?)",
         "ein Ein-/Ausgabefehler trat auf (Platte voll?)"),
    75: ("EX_TEMPFAIL", TransientError, "it asks to try again later", "es bittet, es später erneut zu versuchen"),
    76: ("EX_PROTOCOL", TransientError, "the next mail server answered unexpectedly",
         "der nächste Mailserver antwortete unerwartet"),
    77: ("EX_NOPERM", ConfigurationFault, "this user may not send mail with it",
         "dieser Benutzer darf damit keine Mail senden"),
    78: ("EX_CONFIG", ConfigurationFault, "the mail server's configuration is wrong",
         "die Konfiguration des Mailservers ist fehlerhaft"),
}  # fmt: skip

_STDERR_SHOWN = 400
"""Characters of the program's stderr put into a message (its last lines are the telling ones)."""


def _stderr_text(raw: bytes) -> str:
    text = " ".join(line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip())
    return text if len(text) <= _STDERR_SHOWN else "…" + text[-_STDERR_SHOWN:]


def exit_error(path: str, status: int, stderr: bytes) -> OposError:
    """The error for a sendmail exit status other than 0, with what the program wrote to stderr."""
    said = _stderr_text(stderr)
    said = f": {said}" if said else ""
    if status < 0:
        name = signal.Signals(-status).name if -status in signal.valid_signals() else str(-status)
        return TransientError(
            f"The mail program {path} was stopped by signal {name} before it accepted the mail{said}.",
            f"Das Mailprogramm {path} wurde durch Signal {name} beendet, bevor es die Mail annahm{said}.",
            f"signal {-status}",
        )
    known = _EXITS.get(status)
    if known is None:
        return ConfigurationFault(
            f"The mail program {path} failed with exit status {status}{said}. Check sendmail.path and the "
            "mail server's log; nothing more is sent until this is fixed.",
            f"Das Mailprogramm {path} schlug mit Status {status} fehl{said}. Bitte sendmail.path und das "
            "Protokoll des Mailservers prüfen; bis dahin wird nichts weiter gesendet.",
            f"exit {status}",
        )
    name, cls, en, de = known
    return cls(
        f"The mail program {path} did not accept the mail: {en} (exit {status} {name}){said}.",
        f"Das Mailprogramm {path} hat die Mail nicht angenommen: {de} (Status {status} {name}){said}.",
        f"exit {status} {name}",
    )


def _unusable(path: str, reason_en: str, reason_de: str) -> ConfigurationFault:
    return ConfigurationFault(
        f"sendmail.path {path} {reason_en}. Install a mail server (e.g. Postfix) or set sendmail.path to its "
        "sendmail program (opos-tui config set sendmail.path /usr/sbin/sendmail).",
        f"sendmail.path {path} {reason_de}. Bitte einen Mailserver installieren (z. B. Postfix) oder "
        "sendmail.path auf dessen sendmail-Programm setzen (opos-tui config set sendmail.path /usr/sbin/sendmail).",
    )


def build(
    settings: Settings,
    store: SecretStore,
    *,
    password: str | None = None,
    token_provider: TokenProvider | None = None,
    observer: Observer | None = None,
) -> SendmailTransport:
    """The registry's builder: ``sendmail.path``, waiting at most ``smtp.timeout`` for it. No login applies."""
    return SendmailTransport(settings.sendmail.path, timeout=settings.smtp.timeout, observer=observer)


class SendmailTransport(LocalSession):
    """Hands each mail to the local sendmail program; implements ``transports.base.Transport``."""

    def __init__(self, path: str, *, timeout: float = 30, observer: Observer | None = None) -> None:
        super().__init__(observer)
        self.path = path
        self.timeout = timeout

    def program(self) -> str:
        """The program's full path; ConfigurationFault if it is missing or cannot be run."""
        path = self.path
        if not path:
            raise _unusable("''", "is empty", "ist leer")
        found = shutil.which(path) if os.sep not in path else path
        if found is None or not Path(found).exists():
            raise _unusable(path, "does not exist", "gibt es nicht")
        if Path(found).is_dir():
            raise _unusable(path, "is a folder, not a program", "ist ein Ordner, kein Programm")
        if not os.access(found, os.X_OK):
            raise _unusable(path, "is not executable for this user", "ist für diesen Benutzer nicht ausführbar")
        return found

    async def connect(self) -> None:
        """Check that the program exists and may be run; nothing is started, nothing is sent."""
        self._at(Stage.CONNECT)
        program = self.program()
        real = os.path.realpath(program)
        where = f" (= {real})" if real != program else ""
        self._report(
            Stage.CONNECT,
            tr(
                f"Mail program {program}{where} is there and executable; it gets each mail on its input "
                f"({program} -i -f SENDER -- RECIPIENTS).",
                f"Mailprogramm {program}{where} ist vorhanden und ausführbar; es bekommt jede Mail auf seiner "
                f"Eingabe ({program} -i -f ABSENDER -- EMPFÄNGER).",
            ),
        )

    async def close(self) -> None:
        """Nothing stays open between two mails."""

    async def send(
        self, message: bytes, envelope: Envelope, ready: Awaitable[None] | None = None, then: Then | None = None
    ) -> SendResult:
        if ready is not None:
            await ready
        self._at(Stage.SEND)
        program = self.program()
        sender = envelope_address(envelope.sender)
        recipients = [envelope_address(r) for r in envelope.recipients]
        for address in (sender, *recipients):
            if address.startswith("-"):
                # The "--" already ends the options; an address that looks like one is refused all the same.
                raise PermanentError(
                    f"The address {address} starts with '-': it is not handed to the mail program, which could "
                    "take it for an option. Correct the address and retry.",
                    f"Die Adresse {address} beginnt mit '-': sie wird dem Mailprogramm nicht übergeben, das sie "
                    "für eine Option halten könnte. Adresse korrigieren und neu senden.",
                )
        # Local submission takes Unix line ends; -i: a line with a single dot does not end the mail.
        data = message.replace(b"\r\n", b"\n")
        try:
            process = await asyncio.create_subprocess_exec(
                program, "-i", "-f", sender, "--", *recipients,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise _unusable(self.path, f"cannot be started ({why})", f"startet nicht ({why})") from exc
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(data), self.timeout)
        except TimeoutError:
            await _kill(process)
            raise DeliveryUncertain(
                f"The mail program {program} did not finish within {self.timeout:g} s and was stopped: it may have "
                "queued the mail. It is not sent again by itself; check the mail server's log first.",
                f"Das Mailprogramm {program} wurde nach {self.timeout:g} s ohne Ende abgebrochen: es kann die Mail "
                "schon eingereiht haben. Sie wird nicht von selbst erneut gesendet; bitte zuerst das Protokoll "
                "des Mailservers prüfen.",
            ) from None
        except asyncio.CancelledError:
            await _kill(process)
            raise
        status = process.returncode
        assert status is not None
        if status != 0:
            raise exit_error(program, status, stderr)
        said = _stderr_text(stdout + stderr)
        reply = f"accepted by the local mail program {program} (exit 0); it delivers from its queue" + (
            f": {said}" if said else ""
        )
        self._report(Stage.SEND, reply)
        return SendResult(reply)


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()
