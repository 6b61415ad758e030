"""``opos-tui doctor``: everything an admin checks when mail does not go out, each with its fix in one line.

Settings, the secret store, the SMTP server (name, TCP, TLS and its certificate's expiry, login: the
connection test's own handshake), the queue (counts, the oldest pending, uncertain and stale ``sending``
items, SQLite's quick check, free disk space) and the spool inbox. Every check is OK, WARN or FAIL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import stat
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from opos_tui.i18n import tr
from opos_tui.services import settings, spool
from opos_tui.services.errors import ConfigError, OposError
from opos_tui.services.home import Home
from opos_tui.services.queue import Queue, Status, open_queue
from opos_tui.services.secrets import PASSWORD, FileSecretStore, SecretStore, open_store

CERTIFICATE_WARN_DAYS = 30
DISK_FAIL_BYTES = 50 * 1024 * 1024
DISK_WARN_BYTES = 500 * 1024 * 1024
PENDING_WARN_AGE = timedelta(hours=24)


class Level(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: Level
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def _ok(name: str, detail: str) -> Check:
    return Check(name, Level.OK, detail)


def check_settings(home: Home) -> tuple[list[Check], settings.Settings | None]:
    try:
        current = settings.load(home)
    except ConfigError as exc:
        fix = tr(
            f"correct it with opos-tui config set KEY VALUE or in {home.config_file}",
            f"mit opos-tui config set KEY WERT oder in {home.config_file} korrigieren",
        )
        return [Check("settings", Level.FAIL, exc.message(), fix)], None
    where = str(home.config_file) if home.config_file.exists() else tr("defaults", "Voreinstellungen")
    return [_ok("settings", tr(f"valid ({where})", f"gültig ({where})"))], current


def check_secrets(home: Home, current: settings.Settings | None) -> tuple[list[Check], SecretStore | None]:
    try:
        store = open_store(home)
    except OposError as exc:
        fix = tr("set OPOS_TUI_SECRETS=file or =keyring", "OPOS_TUI_SECRETS=file oder =keyring setzen")
        return [Check("secret store", Level.FAIL, exc.message(), fix)], None
    checks = [_ok("secret store", store.describe())]
    if isinstance(store, FileSecretStore) and store.path.exists():
        mode = stat.S_IMODE(store.path.stat().st_mode)
        if mode & 0o077:
            checks = [
                Check(
                    "secret store",
                    Level.FAIL,
                    tr(f"{store.path} is readable by others (mode {mode:04o})", f"{store.path} ist für andere lesbar"),
                    f"chmod 600 {store.path}",
                )
            ]
    if current is not None and current.auth.method == "password":
        try:
            missing = store.get(PASSWORD) is None
        except OposError as exc:
            return [
                *checks,
                Check("password", Level.FAIL, exc.message(), "opos-tui config set-password --stdin"),
            ], store
        if missing:
            checks.append(
                Check(
                    "password",
                    Level.FAIL,
                    tr("auth.method is password, but no password is stored", "kein Passwort gespeichert"),
                    "opos-tui config set-password --stdin",
                )
            )
        else:
            checks.append(_ok("password", tr("stored", "gespeichert")))
    return checks, store


_STAGE_FIX = {
    "connect": (
        "check smtp.host and smtp.port, and that the server runs and a firewall lets you through",
        "smtp.host und smtp.port prüfen, und ob der Server läuft und die Firewall durchlässt",
    ),
    "tls": (
        "trust the server's CA with opos-tui config set smtp.ca_file FILE.pem, or choose the matching smtp.security",
        "der CA des Servers mit opos-tui config set smtp.ca_file DATEI.pem vertrauen, oder smtp.security anpassen",
    ),
    "ehlo": (
        "check that smtp.host and smtp.port lead to a mail server",
        "prüfen, ob smtp.host/port ein Mailserver ist",
    ),
    "auth": (
        "store the right password (opos-tui config set-password --stdin) and check auth.profile",
        "richtiges Passwort speichern (opos-tui config set-password --stdin) und auth.profile prüfen",
    ),
}
_STAGE_NAME = {"connect": "smtp tcp", "tls": "smtp tls", "ehlo": "smtp tcp", "auth": "smtp login"}


async def check_smtp(current: settings.Settings, store: SecretStore, now: datetime) -> list[Check]:
    from opos_tui.services.connection_test import run_connection_test

    if current.connection != "smtp":
        return [_ok("smtp", tr(f"not used (connection {current.connection})", f"nicht benutzt ({current.connection})"))]
    host, port = current.smtp.host, current.smtp.port
    if not host:
        return [
            Check(
                "smtp dns",
                Level.FAIL,
                tr("smtp.host is not set", "smtp.host fehlt"),
                "opos-tui config set smtp.host HOST",
            )
        ]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        fix = tr("check smtp.host (and the DNS of this machine)", "smtp.host (und das DNS dieses Rechners) prüfen")
        return [Check("smtp dns", Level.FAIL, tr(f"{host} does not resolve: {exc}", f"{host} unbekannt: {exc}"), fix)]
    addresses = ", ".join(dict.fromkeys(str(info[4][0]) for info in infos))
    checks = [_ok("smtp dns", f"{host} → {addresses}")]
    try:
        result = await run_connection_test(current, store)
    except ConfigError as exc:
        return [*checks, Check("smtp login", Level.FAIL, exc.message(), "opos-tui config set-password --stdin")]
    failed = None if result.ok else {"ehlo": "connect", "send": "auth"}.get(result.stage, result.stage)
    for stage in ("connect", "tls", "auth"):
        if stage == failed:
            en, de = _STAGE_FIX[result.stage if result.stage in _STAGE_FIX else stage]
            checks.append(Check(_STAGE_NAME[stage], Level.FAIL, result.error or "", tr(en, de)))
            return checks
        checks.append(_stage_ok(stage, current, result.tls, host, port))
    if result.certificate is not None:
        left = result.certificate.not_after - now
        valid = result.certificate.not_after.strftime("%Y-%m-%d")
        if left < timedelta(days=CERTIFICATE_WARN_DAYS):
            checks.append(
                Check(
                    "smtp certificate",
                    Level.WARN,
                    tr(f"expires on {valid}, in {left.days} days", f"läuft am {valid} ab, in {left.days} Tagen"),
                    tr("ask the mail server's admin to renew it", "den Admin des Mailservers um Erneuerung bitten"),
                )
            )
        else:
            checks.append(_ok("smtp certificate", tr(f"valid until {valid}", f"gültig bis {valid}")))
    return checks


def _stage_ok(stage: str, current: settings.Settings, tls: bool, host: str, port: int) -> Check:
    if stage == "connect":
        return _ok("smtp tcp", tr(f"{host} port {port} answers as a mail server", f"{host} Port {port} antwortet"))
    if stage == "tls":
        if tls:
            return _ok(
                "smtp tls", tr(f"encrypted ({current.smtp.security})", f"verschlüsselt ({current.smtp.security})")
            )
        return Check(
            "smtp tls",
            Level.WARN,
            tr("the connection is NOT encrypted", "die Verbindung ist NICHT verschlüsselt"),
            "opos-tui config set smtp.security StartTls",
        )
    if current.auth.method == "none":
        return _ok("smtp login", tr("not used (auth.method none)", "nicht benutzt (auth.method none)"))
    return _ok("smtp login", tr(f"accepted for {current.auth.profile}", f"angenommen für {current.auth.profile}"))


def _ago(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return (
        f"{hours // 24} d {hours % 24} h" if hours >= 24 else f"{hours} h {int(delta.total_seconds() // 60) % 60} min"
    )


def check_queue(home: Home, now: datetime) -> list[Check]:
    try:
        queue = open_queue(home)
    except OposError as exc:
        fix = tr(
            f"stop every opos-tui, move {home.queue_db} aside and restore it from a backup",
            f"alle opos-tui beenden, {home.queue_db} beiseitelegen und aus einer Sicherung zurückholen",
        )
        return [Check("queue file", Level.FAIL, exc.message(), fix)]
    with queue:
        return _queue_checks(queue, home, now)


def _queue_checks(queue: Queue, home: Home, now: datetime) -> list[Check]:
    problems = queue.quick_check()
    if problems != ["ok"]:
        fix = tr(
            f"stop every opos-tui, copy {home.queue_db} away, then: sqlite3 queue.db .recover | sqlite3 new.db",
            f"alle opos-tui beenden, {home.queue_db} sichern, dann: sqlite3 queue.db .recover | sqlite3 neu.db",
        )
        return [Check("queue integrity", Level.FAIL, "; ".join(problems[:3]), fix)]
    checks = [_ok("queue integrity", tr(f"{home.queue_db}: quick_check ok", f"{home.queue_db}: quick_check ok"))]
    stale = queue.recover_stale()
    counts = queue.counts()
    checks.append(_ok("queue counts", ", ".join(f"{s.value} {n}" for s, n in counts.items())))
    pending = counts[Status.PENDING]
    if pending:
        oldest = queue.page(Status.PENDING, offset=pending - 1, limit=1)[0]
        age = now - oldest.created_at
        detail = tr(f"#{oldest.id}, queued {_ago(age)} ago", f"#{oldest.id}, vor {_ago(age)} eingereiht")
        if age > PENDING_WARN_AGE:
            fix = tr(
                "send (opos-tui send) or check that opos-tui run, its timer or cron job is active",
                "senden (opos-tui send) oder prüfen, ob opos-tui run, sein Timer oder Cron-Job läuft",
            )
            checks.append(Check("oldest pending", Level.WARN, detail, fix))
        else:
            checks.append(_ok("oldest pending", detail))
    else:
        checks.append(_ok("oldest pending", tr("nothing pending", "nichts wartet")))
    if stale:
        listed = " ".join(f"#{i}" for i in stale)
        checks.append(
            Check(
                "stale sending",
                Level.WARN,
                tr(
                    f"{listed} were being sent by a process that is gone: now uncertain (they may have arrived)",
                    f"{listed} wurden von einem beendeten Prozess gesendet: jetzt unsicher (evtl. angekommen)",
                ),
                tr("check them: opos-tui queue --status uncertain", "prüfen: opos-tui queue --status uncertain"),
            )
        )
    else:
        checks.append(_ok("stale sending", tr("none", "keine")))
    uncertain = counts[Status.UNCERTAIN]
    if uncertain:
        checks.append(
            Check(
                "uncertain",
                Level.WARN,
                tr(f"{uncertain} mails may or may not have arrived", f"{uncertain} Mails evtl. angekommen"),
                tr(
                    "ask the recipient, then opos-tui mark-sent ID or retry ID",
                    "beim Empfänger nachfragen, dann opos-tui mark-sent ID oder retry ID",
                ),
            )
        )
    else:
        checks.append(_ok("uncertain", tr("none", "keine")))
    return checks


def check_disk(home: Home) -> Check:
    free = shutil.disk_usage(home.root).free
    detail = tr(f"{free / 1024**3:.1f} GB free in {home.root}", f"{free / 1024**3:.1f} GB frei in {home.root}")
    fix = tr("free space on that disk: the queue cannot grow otherwise", "Platz schaffen: sonst wächst die Queue nicht")
    if free < DISK_FAIL_BYTES:
        return Check("disk space", Level.FAIL, detail, fix)
    if free < DISK_WARN_BYTES:
        return Check("disk space", Level.WARN, detail, fix)
    return _ok("disk space", detail)


def check_spool(home: Home) -> Check:
    inbox = home.spool_dir / "inbox"
    fix = tr(
        f"give the user running opos-tui read and write access: chmod u+rwx {inbox}",
        f"dem Benutzer von opos-tui Lese- und Schreibrecht geben: chmod u+rwx {inbox}",
    )
    try:
        inbox = spool.default_inbox(home)
        next(os.scandir(inbox), None)
        with tempfile.NamedTemporaryFile(dir=inbox, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check("spool inbox", Level.FAIL, f"{inbox}: {exc.strerror or exc}", fix)
    return _ok("spool inbox", tr(f"{inbox} readable and writable", f"{inbox} les- und schreibbar"))


async def run_checks(home: Home, now: datetime | None = None) -> list[Check]:
    """Every check, in the order an admin reads them."""
    now = now or datetime.now(UTC)
    checks, current = check_settings(home)
    secret_checks, store = check_secrets(home, current)
    checks += secret_checks
    if current is not None and store is not None:
        checks += await check_smtp(current, store, now)
    if not home.root.is_dir():
        fix = tr("give the right --home or OPOS_TUI_HOME", "das richtige --home oder OPOS_TUI_HOME angeben")
        return [*checks, Check("home", Level.FAIL, tr(f"{home.root} does not exist", f"{home.root} fehlt"), fix)]
    return [*checks, *check_queue(home, now), check_disk(home), check_spool(home)]
