"""The SMTP transport's errors: one class per thing an admin or operator can act on, in English and German.

Each is a subclass of a generic error (``services.errors``) whose category tells the dispatcher what to do.
Errors that *are* the server's reply carry it as ``code`` and ``reply`` (``451 4.3.0 try again later``):
the queue records both.
"""

from __future__ import annotations

import errno

from opos_tui.services.errors import (
    ConfigurationFault,
    DeliveryUncertain,
    OposError,
    PermanentError,
    TransientError,
)


class ServerReply(OposError):
    """Mixed into errors that are the server's own answer: ``code`` (e.g. 451) and ``reply`` (code and text)."""

    code: int
    reply: str

    def _set_reply(self, code: int, text: str) -> None:
        self.code = code
        self.reply = reply_text(code, text)


def reply_text(code: int, text: str) -> str:
    """A server reply on one line: ``451 4.3.0 try again later`` (multi-line replies joined by spaces)."""
    lines = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return f"{code} {lines}".strip()


class ServerUnreachable(TransientError):
    """No TCP connection to the server (network down, host unreachable, port closed)."""

    def __init__(self, host: str, port: int, en: str, de: str, detail: str = "") -> None:
        self.host = host
        self.port = port
        super().__init__(en, de, detail)

    @classmethod
    def because(
        cls, host: str, port: int, reason: str, detail: str = "", os_error: int | None = None
    ) -> ServerUnreachable:
        """``reason`` as the operating system said it (English); ``os_error``, its errno, says it in German."""
        reason_de = _OS_REASONS_DE.get(os_error or 0, reason)
        return cls(
            host,
            port,
            f"Cannot connect to {host} port {port}: {reason}. Check smtp.host, smtp.port and the network.",
            f"Keine Verbindung zu {host} Port {port}: {reason_de}. Bitte smtp.host, smtp.port und das Netz prüfen.",
            detail,
        )


# The operating system's reasons why a connection failed, for the German message.
_OS_REASONS_DE = {
    errno.ENETUNREACH: "das Netz ist nicht erreichbar",
    errno.ENETDOWN: "das Netz ist ausgefallen",
    errno.EHOSTUNREACH: "keine Route zum Host",
    errno.EHOSTDOWN: "der Host ist ausgefallen",
    errno.ECONNRESET: "die Verbindung wurde zurückgesetzt",
    errno.ECONNABORTED: "die Verbindung wurde abgebrochen",
    errno.ETIMEDOUT: "Zeitüberschreitung",
    errno.EADDRNOTAVAIL: "die Adresse ist nicht verfügbar",
    errno.EACCES: "keine Berechtigung",
}


class ConnectionRefused(ServerUnreachable):
    """Nothing listens on that port (or a firewall rejects): wrong port, or the server is down."""

    def __init__(self, host: str, port: int, detail: str = "") -> None:
        super().__init__(
            host,
            port,
            f"{host} refused the connection on port {port}: no mail server listens there, or it is down. "
            "Check smtp.port (587 for StartTls, 465 for SslOnConnect, 25 for relays).",
            f"{host} hat die Verbindung auf Port {port} abgelehnt: dort läuft kein Mailserver, oder er ist "
            "nicht erreichbar. Bitte smtp.port prüfen (587 für StartTls, 465 für SslOnConnect, 25 für Relays).",
            detail,
        )


class ConnectionTimedOut(ServerUnreachable):
    """The TCP connection was not answered within ``smtp.timeout`` (firewall dropping, wrong host)."""

    def __init__(self, host: str, port: int, timeout: float, detail: str = "") -> None:
        self.timeout = timeout
        super().__init__(
            host,
            port,
            f"No answer from {host} port {port} within {timeout:g} s: a firewall may block the port, or the host "
            "is wrong.",
            f"Keine Antwort von {host} Port {port} innerhalb von {timeout:g} s: eine Firewall sperrt "
            "vielleicht den Port, oder der Host ist falsch.",
            detail,
        )


class ConnectionLost(TransientError):
    """The connection broke before the message data went out: nothing was delivered; safe to retry."""

    def __init__(self, host: str, port: int, detail: str = "") -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"The connection to {host} port {port} was lost before the mail was sent; it will be retried.",
            f"Die Verbindung zu {host} Port {port} brach ab, bevor die Mail gesendet war; sie wird erneut versucht.",
            detail,
        )


class ServerDeferred(ServerReply, TransientError):
    """A 4xx reply (server busy, greylisting, mailbox temporarily unavailable): try this mail again later."""

    def __init__(self, code: int, text: str, stage: str, refused: dict[str, str] | None = None) -> None:
        self._set_reply(code, text)
        self.stage = stage
        self.refused = dict(refused or {})
        super().__init__(
            f"The server asks to try again later ({self.reply}).",
            f"Der Server bittet, es später erneut zu versuchen ({self.reply}).",
            f"reply to {stage}",
        )


class MessageRejected(ServerReply, PermanentError):
    """A 5xx reply to MAIL FROM or to the message data: this mail cannot go as it is."""

    def __init__(self, code: int, text: str, stage: str) -> None:
        self._set_reply(code, text)
        self.stage = stage
        what_en, what_de = (
            ("The sender address", "Die Absenderadresse") if stage == "mail" else ("The mail", "Die Mail")
        )
        super().__init__(
            f"{what_en} was refused by the server ({self.reply}).",
            f"{what_de} wurde vom Server abgelehnt ({self.reply}).",
            f"reply to {stage}",
        )


class RecipientsRefused(ServerReply, PermanentError):
    """The server refused every recipient with 5xx: this mail cannot go. ``refused``: address -> reply."""

    def __init__(self, refused: dict[str, str]) -> None:
        self.refused = dict(refused)
        first = next(iter(self.refused.values()), "550")
        code_text = first.split(" ", 1)
        self._set_reply(int(code_text[0]), code_text[1] if len(code_text) > 1 else "")
        listed = "; ".join(f"{addr}: {reply}" for addr, reply in self.refused.items())
        super().__init__(
            f"The server refused the recipient address ({listed}).",
            f"Der Server hat die Empfängeradresse abgelehnt ({listed}).",
            "reply to rcpt",
        )


class MessageTooLarge(PermanentError):
    """The message is larger than the SIZE the server announced; checked before anything is sent."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"The mail is too large for the server: {size:,} bytes, the server accepts at most {limit:,} "
            "bytes. Send smaller attachments.",
            f"Die Mail ist für den Server zu groß: {size:,} Bytes, der Server nimmt höchstens {limit:,} Bytes "
            "an. Bitte kleinere Anhänge senden.",
        )


class ServerRefused(ServerReply, ConfigurationFault):
    """The server refused the session itself (5xx greeting or EHLO), e.g. this client's address is blocked."""

    def __init__(self, code: int, text: str, host: str) -> None:
        self._set_reply(code, text)
        self.host = host
        super().__init__(
            f"{host} refuses to talk to this computer ({self.reply}). Ask the mail server's admin to allow it.",
            f"{host} verweigert diesem Rechner die Verbindung ({self.reply}). Bitte den Admin des Mailservers "
            "um Freigabe bitten.",
        )


class HostNotFound(ConfigurationFault):
    """The host name does not resolve."""

    def __init__(self, host: str, detail: str = "") -> None:
        self.host = host
        super().__init__(
            f"The host name {host} is unknown (DNS). Check smtp.host.",
            f"Der Hostname {host} ist unbekannt (DNS). Bitte smtp.host prüfen.",
            detail,
        )


class NotSmtp(ConfigurationFault):
    """Something answered on that port, but not an SMTP server."""

    def __init__(self, host: str, port: int, detail: str = "") -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"{host} port {port} does not answer like a mail server (SMTP). Check smtp.host and smtp.port.",
            f"{host} Port {port} antwortet nicht wie ein Mailserver (SMTP). Bitte smtp.host und smtp.port prüfen.",
            detail,
        )


class TlsFault(ConfigurationFault):
    """Encryption could not be set up as the settings ask: base of the TLS and certificate errors."""


class TlsMismatch(TlsFault):
    """The server speaks TLS from the first byte where plain SMTP was expected, or the reverse."""

    def __init__(self, host: str, port: int, server_wants_tls: bool, suggested: str, detail: str = "") -> None:
        self.host = host
        self.port = port
        self.suggested = suggested
        if server_wants_tls:
            en = (
                f"{host} port {port} took the connection but sent no greeting. Either it is a TLS port that "
                f"expects encryption from the first byte (then set smtp.security to {suggested}), or the mail "
                "server there is not answering (hung or overloaded: ask its admin)."
            )
            de = (
                f"{host} Port {port} hat die Verbindung angenommen, aber nicht gegrüßt. Entweder ist es ein "
                f"TLS-Port, der Verschlüsselung ab dem ersten Byte erwartet (dann smtp.security auf {suggested} "
                "stellen), oder der Mailserver dort antwortet nicht (hängt oder ist überlastet: bitte seinen "
                "Admin fragen)."
            )
        else:
            en = (
                f"{host} port {port} speaks plain SMTP, not TLS from the first byte. Set smtp.security to "
                f"{suggested} (or use port 465 for SslOnConnect)."
            )
            de = (
                f"{host} Port {port} spricht unverschlüsseltes SMTP, nicht TLS ab dem ersten Byte. Bitte "
                f"smtp.security auf {suggested} stellen (oder Port 465 für SslOnConnect)."
            )
        super().__init__(en, de, detail)


class StartTlsNotOffered(TlsFault):
    """``StartTls`` was asked for and the server does not offer STARTTLS: MailKit makes no connection then."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"{host} port {port} does not offer STARTTLS, and smtp.security is StartTls: no connection without "
            "encryption. Use port 465 with SslOnConnect if the server has it, or (only on a trusted network) "
            "StartTlsWhenAvailable.",
            f"{host} Port {port} bietet kein STARTTLS an, und smtp.security ist StartTls: ohne Verschlüsselung "
            "keine Verbindung. Port 465 mit SslOnConnect verwenden, falls der Server das kann, oder (nur im "
            "vertrauenswürdigen Netz) StartTlsWhenAvailable.",
        )


class StartTlsRefused(ServerReply, TlsFault):
    """The server offered STARTTLS but refused it when asked."""

    def __init__(self, code: int, text: str, host: str) -> None:
        self._set_reply(code, text)
        self.host = host
        super().__init__(
            f"{host} offered STARTTLS but refused it ({self.reply}); the mail is never sent unencrypted instead.",
            f"{host} bot STARTTLS an, lehnte es dann aber ab ({self.reply}); unverschlüsselt wird stattdessen "
            "nicht gesendet.",
        )


class TlsFailed(TlsFault):
    """The TLS handshake failed for a reason other than the certificate (protocol version, ciphers)."""

    def __init__(self, host: str, port: int, reason: str, detail: str = "") -> None:
        self.host = host
        self.port = port
        super().__init__(
            f"The encrypted connection to {host} port {port} could not be set up: {reason}.",
            f"Die verschlüsselte Verbindung zu {host} Port {port} kam nicht zustande: {reason}.",
            detail,
        )


class CertificateNotTrusted(TlsFault):
    """The server's certificate does not chain to a trusted CA (system store plus ``smtp.ca_file``)."""

    def __init__(self, host: str, subject: str, issuer: str, reason: str, detail: str = "") -> None:
        self.host = host
        self.subject = subject
        self.issuer = issuer
        self_signed = subject == issuer and subject != "?"
        which_en = "the certificate itself" if self_signed else f"the certificate of the CA '{issuer}'"
        which_de = "das Zertifikat selbst" if self_signed else f"das Zertifikat der CA '{issuer}'"
        super().__init__(
            f"The certificate of {host} is not trusted ({reason}): subject '{subject}', issued by '{issuer}'. "
            f"If it is your organisation's own server, save {which_en} as a PEM file and set smtp.ca_file to it "
            "(opos-tui config set smtp.ca_file /path/ca.pem).",
            f"Dem Zertifikat von {host} wird nicht vertraut ({reason}): Inhaber '{subject}', ausgestellt von "
            f"'{issuer}'. Ist es der eigene Server Ihrer Organisation, {which_de} als PEM-Datei speichern und "
            "smtp.ca_file darauf setzen (opos-tui config set smtp.ca_file /pfad/ca.pem).",
            detail,
        )


class CertificateProblem(TlsFault):
    """The certificate is trusted but unusable: issued for another host name, expired, not yet valid."""

    def __init__(self, host: str, subject: str, issuer: str, reason: str, detail: str = "") -> None:
        self.host = host
        self.subject = subject
        self.issuer = issuer
        super().__init__(
            f"The certificate of {host} cannot be accepted: {reason} (subject '{subject}', issued by "
            f"'{issuer}'). Check that smtp.host is the name the certificate is made for.",
            f"Das Zertifikat von {host} ist nicht annehmbar: {reason} (Inhaber '{subject}', ausgestellt von "
            f"'{issuer}'). Bitte prüfen, ob smtp.host der Name ist, für den das Zertifikat ausgestellt ist.",
            detail,
        )


class CaFileUnusable(TlsFault):
    """``smtp.ca_file`` cannot be read or holds no PEM certificate."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(
            f"smtp.ca_file {path} cannot be used: {reason}. It must be a PEM file with the CA certificate.",
            f"smtp.ca_file {path} ist nicht verwendbar: {reason}. Es muss eine PEM-Datei mit dem CA-Zertifikat sein.",
        )


class AuthFault(ConfigurationFault):
    """Login (AUTH) is not possible with these settings: base of the login errors."""


class PlainAuthRefused(AuthFault):
    """The connection is not encrypted and ``smtp.allow_plain_auth`` is off: the password is not sent."""

    def __init__(self, host: str) -> None:
        self.host = host
        super().__init__(
            f"The connection to {host} is not encrypted, so the password is not sent. Use StartTls or "
            "SslOnConnect; only on a trusted internal network set smtp.allow_plain_auth = true.",
            f"Die Verbindung zu {host} ist nicht verschlüsselt, daher wird das Passwort nicht gesendet. Bitte "
            "StartTls oder SslOnConnect verwenden; nur im vertrauenswürdigen internen Netz smtp.allow_plain_auth "
            "= true setzen.",
        )


class AuthNotOffered(AuthFault):
    """The server offers no login mechanism this client can use (or none at all, often before TLS)."""

    def __init__(self, host: str, wanted: str, offered: list[str], encrypted: bool) -> None:
        self.host = host
        self.offered = list(offered)
        shown = " ".join(offered)
        hint_en = "" if encrypted else " Many servers offer login only on an encrypted connection: try StartTls."
        hint_de = "" if encrypted else " Viele Server bieten die Anmeldung nur verschlüsselt an: StartTls versuchen."
        super().__init__(
            f"{host} does not offer {wanted} login (offered: {shown or 'none'}).{hint_en}",
            f"{host} bietet keine Anmeldung mit {wanted} an (angeboten: {shown or 'keine'}).{hint_de}",
        )


class AuthenticationFailed(ServerReply, AuthFault):
    """The server refused the login (535): wrong Profil/Passwort, or a refused OAuth token."""

    def __init__(self, code: int, text: str, user: str, mechanism: str) -> None:
        self._set_reply(code, text)
        self.user = user
        self.mechanism = mechanism
        super().__init__(*self._messages())

    def _messages(self) -> tuple[str, str]:
        if self.mechanism == "XOAUTH2":
            return (
                f"The server refused the OAuth token for {self.user} ({self.reply}). Sign in again, and check "
                "that auth.profile is the mailbox the token was issued for.",
                f"Der Server hat das OAuth-Token für {self.user} abgelehnt ({self.reply}). Bitte neu anmelden "
                "und prüfen, ob auth.profile das Postfach ist, für das das Token ausgestellt wurde.",
            )
        return (
            f"Login as {self.user} failed ({self.reply}): Profil (auth.profile) or Passwort is wrong. Store the "
            "password again with: opos-tui config set-password",
            f"Anmeldung als {self.user} fehlgeschlagen ({self.reply}): Profil (auth.profile) oder Passwort ist "
            "falsch. Passwort neu speichern mit: opos-tui config set-password",
        )


class SmtpAuthDisabled(AuthenticationFailed):
    """Exchange Online (5.7.139 / 5.7.3): SMTP AUTH is switched off for the mailbox or the whole tenant."""

    def _messages(self) -> tuple[str, str]:
        return (
            f"Exchange Online refused the login of {self.user} ({self.reply}): authenticated SMTP (SMTP AUTH) is "
            "disabled for this mailbox or the whole tenant, or blocked by security defaults. A Microsoft 365 "
            "admin must enable 'Authenticated SMTP' for the mailbox (admin center > Users > Mail > Manage email "
            "apps) and allow it for the tenant (Set-TransportConfig -SmtpClientAuthenticationDisabled $false). "
            "If it is enabled, check Profil and Passwort.",
            f"Exchange Online hat die Anmeldung von {self.user} abgelehnt ({self.reply}): authentifiziertes SMTP "
            "(SMTP AUTH) ist für dieses Postfach oder den ganzen Mandanten abgeschaltet oder durch "
            "Sicherheitsstandards gesperrt. Ein Microsoft-365-Admin muss 'Authentifiziertes SMTP' für das "
            "Postfach einschalten (Admin Center > Benutzer > E-Mail > E-Mail-Apps verwalten) und für den "
            "Mandanten erlauben (Set-TransportConfig -SmtpClientAuthenticationDisabled $false). Ist es "
            "eingeschaltet, bitte Profil und Passwort prüfen.",
        )


class BasicAuthRefused(AuthenticationFailed):
    """Exchange Online 5.7.30: password (Basic) logins are refused for client submission; only OAuth works.

    The same advice whenever it comes back to a password login, at AUTH or after it (MAIL FROM)."""

    def _messages(self) -> tuple[str, str]:
        return (
            f"The server refuses password logins for {self.user} ({self.reply}): Basic authentication is "
            "switched off (Exchange Online no longer accepts it). Switch auth.method to oauth-dialog (or oauth) "
            "and sign in with `opos-tui oauth login` (README: OAuth 2.0 set-up); the password is not the problem.",
            f"Der Server lehnt Anmeldungen mit Passwort für {self.user} ab ({self.reply}): die Standard-"
            "authentifizierung (Basic) ist abgeschaltet (Exchange Online akzeptiert sie nicht mehr). Bitte "
            "auth.method auf oauth-dialog (oder oauth) stellen und mit `opos-tui oauth login` anmelden (README: "
            "Einrichtung OAuth 2.0); am Passwort liegt es nicht.",
        )


class AuthenticationRequired(ServerReply, AuthFault):
    """530: the server accepts mail only after login, and ``auth.method`` is ``none`` (or login came too late)."""

    def __init__(self, code: int, text: str, host: str) -> None:
        self._set_reply(code, text)
        self.host = host
        super().__init__(
            f"{host} requires a login before sending ({self.reply}). Set auth.method to password (Anmelden "
            "with Profil/Passwort) or oauth.",
            f"{host} verlangt vor dem Senden eine Anmeldung ({self.reply}). Bitte auth.method auf password "
            "(Anmelden mit Profil/Passwort) oder oauth stellen.",
        )


class ReplyLost(DeliveryUncertain):
    """The connection broke after the message data went out, before the server confirmed it."""

    def __init__(self, host: str, detail: str = "") -> None:
        self.host = host
        super().__init__(
            f"The connection to {host} broke after the mail was sent, before the server confirmed it: it "
            "may have arrived. It is not sent again by itself; check with the recipient first.",
            f"Die Verbindung zu {host} brach ab, nachdem die Mail gesendet war, aber bevor der Server sie "
            "bestätigte: sie kann angekommen sein. Sie wird nicht von selbst erneut gesendet; bitte zuerst "
            "beim Empfänger nachfragen.",
            detail,
        )
