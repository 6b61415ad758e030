"""The command line: parse, call the services, print for a person or as ``--json``; exit codes.

Exit codes everywhere: 0 success, 1 the operation failed (server said no, mail not sent), 2 bad usage or
bad input, 130 interrupted (Ctrl+C), 143 terminated (SIGTERM, which ``send`` handles like Ctrl+C).

Start-up is part of the contract: building the parser imports nothing but the standard library's argparse,
so ``--help`` and a usage error cost about what Python's own start does. Each command imports what it needs
when it runs (the settings, the queue, asyncio, the mail package, Textual; pydantic only where config.toml has
to be checked), in its own function.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar, assert_never

from opos_tui import __version__
from opos_tui.i18n import LANGS, set_lang, tr
from opos_tui.services.errors import BadInput, Category, OposError

if TYPE_CHECKING:
    import threading
    from collections.abc import Coroutine

    from opos_tui.app import StartScreen
    from opos_tui.services import settings
    from opos_tui.services.dispatcher import InteractionHandler, Progress
    from opos_tui.services.home import Home
    from opos_tui.services.queue import ActionResult, ItemRow, Queue
    from opos_tui.services.run_result import RunResult
    from opos_tui.services.send_run import RunEvent
    from opos_tui.services.signin import Authorization, DeviceCode, SignIn, Token

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

Handler = Callable[[argparse.Namespace], int]
T = TypeVar("T")

# What the parser offers, as plain data: building it must import neither the secret store nor the queue
# (tests/test_config_cli.py holds these to the services' own lists).
PASSWORD = "auth.password"
SECRET_NAMES = (PASSWORD, "oauth.client_secret", "queue.password")
STATUSES = ("pending", "held", "sending", "sent", "deferred", "failed", "uncertain")


class UsageError(BadInput):
    """Bad input on the command line: one clear line on stderr, exit 2."""


def exit_code(category: Category) -> int:
    """The exit code of a command that an error of this category ended: the one place that decides it."""
    match category:
        case Category.INPUT:
            return EXIT_USAGE
        case (
            Category.TRANSIENT | Category.PERMANENT | Category.UNCERTAIN | Category.CONFIGURATION | Category.INTERACTION
        ):
            return EXIT_FAILED
        case _:
            assert_never(category)


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def home_of(args: argparse.Namespace) -> Home:
    """The installation folder; a path that cannot be one (it, or a folder above it, is a file) is bad input."""
    from opos_tui.services.home import Home

    home = Home.resolve(getattr(args, "home", None))
    found = next(p for p in (home.root, *home.root.parents) if p.exists())
    if not found.is_dir():
        raise UsageError(
            f"{home.root} cannot be the installation folder: {found} is a file (check --home or OPOS_TUI_HOME)",
            f"{home.root} kann nicht der Installationsordner sein: {found} ist eine Datei"
            " (--home oder OPOS_TUI_HOME prüfen)",
        )
    return home


# --- config -------------------------------------------------------------------------------------------


SHOWN_SECRETS = ("auth.password_set", "oauth.client_secret_set", "queue.password_set")


def settings_report(home: Home) -> dict[str, Any]:
    """Effective settings, secrets only as set/unset, and where they are kept.

    Nested as in config.toml (``.smtp.port``) and, for scripts, every key once more under its dotted name
    (``."smtp.port"``), the names ``config set`` takes.
    """
    from opos_tui.services import secrets, settings

    current = settings.load(home)
    store = secrets.open_store(home)
    data: dict[str, Any] = current.data()
    data["auth"]["password_set"] = store.get(secrets.PASSWORD) is not None
    data["oauth"]["client_secret_set"] = store.get(secrets.GOOGLE_CLIENT_SECRET) is not None
    data["queue"]["password_set"] = store.get(secrets.QUEUE_PASSWORD) is not None
    for key in [*settings.KEYS, *SHOWN_SECRETS]:
        section, _, name = key.rpartition(".")
        if section:
            data[key] = data[section][name]
    data["home"] = str(home.root)
    data["config_file"] = str(home.config_file)
    data["secret_store"] = {"kind": store.kind, "description": store.describe()}
    return data


def cmd_config_show(args: argparse.Namespace) -> int:
    from opos_tui.services import settings

    report = settings_report(home_of(args))
    if args.json:
        print_json(report)
        return EXIT_OK
    for key in [*settings.KEYS, *SHOWN_SECRETS]:
        value = report[key]
        if key in SHOWN_SECRETS:
            value = tr("set", "gesetzt") if value else tr("unset", "nicht gesetzt")
        print(f"{key} = {settings.format_value(value)}")
    print(f"# home: {report['home']}")
    print(f"# secrets: {report['secret_store']['description']}")
    return EXIT_OK


def cmd_config_get(args: argparse.Namespace) -> int:
    from opos_tui.services import settings

    value = settings.get_value(settings.load(home_of(args)), args.key)
    if args.json:
        print_json({args.key: value})
    else:
        print(settings.format_value(value))
    return EXIT_OK


def cmd_config_set(args: argparse.Namespace) -> int:
    from opos_tui.services import settings

    home = home_of(args)
    updated = settings.set_value(home, args.key, args.value)
    value = settings.format_value(settings.get_value(updated, args.key))
    print(
        tr(
            f"{args.key} = {value} (saved to {home.config_file})",
            f"{args.key} = {value} (gespeichert in {home.config_file})",
        )
    )
    return EXIT_OK


def read_secret(args: argparse.Namespace, label: str) -> str:
    if args.stdin:
        value = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        import getpass

        value = getpass.getpass(f"{label}: ")
    else:
        raise UsageError(
            "standard input is not a terminal: use --stdin", "Eingabe ist kein Terminal: --stdin verwenden"
        )
    if not value:
        raise UsageError(f"no {label} given; nothing changed", f"kein {label} angegeben; nichts geändert")
    return value


def store_secret(args: argparse.Namespace, name: str, label: str) -> int:
    from opos_tui.services import secrets

    home = home_of(args)
    store = secrets.open_store(home)
    store.set(name, read_secret(args, label))
    print(tr(f"{label} saved in the {store.describe()}", f"{label} gespeichert: {store.describe()}"))
    return EXIT_OK


def cmd_config_set_password(args: argparse.Namespace) -> int:
    return store_secret(args, PASSWORD, tr("password", "Passwort"))


def unknown_secret(name: str) -> UsageError:
    text = f"unknown secret '{name}'; known: {', '.join(SECRET_NAMES)}"
    return UsageError(text, text)


def cmd_config_set_secret(args: argparse.Namespace) -> int:
    if args.name not in SECRET_NAMES:
        raise unknown_secret(args.name)
    return store_secret(args, args.name, args.name)


def cmd_config_delete_secret(args: argparse.Namespace) -> int:
    from opos_tui.services import secrets

    if args.name not in SECRET_NAMES:
        raise unknown_secret(args.name)
    secrets.open_store(home_of(args)).delete(args.name)
    print(tr(f"{args.name} removed", f"{args.name} entfernt"))
    return EXIT_OK


# --- connection test ----------------------------------------------------------------------------------

EVENT_MARKS = {"ok": "ok", "warning": "warn", "failed": "FAIL"}


def cmd_test_connection(args: argparse.Namespace) -> int:
    import asyncio

    from opos_tui.services import secrets, settings
    from opos_tui.services.connection_test import HandshakeEvent, run_connection_test

    home = home_of(args)
    current = settings.load(home)
    store = secrets.open_store(home)
    if dialog_allowed(current):
        sign_in_if_needed(current, home)

    def show(event: HandshakeEvent) -> None:
        print(f"{event.stage:<8}{EVENT_MARKS[event.status]:<5}{event.summary}", flush=True)

    result = asyncio.run(
        run_connection_test(
            current,
            store,
            send_test_to=args.send_test_to,
            home=home,
            on_event=None if args.json else show,
        )
    )
    if args.json:
        print_json(result.to_json())
    return EXIT_OK if result.ok else EXIT_FAILED


# --- the queue ----------------------------------------------------------------------------------------


def parse_vars(pairs: Sequence[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--var takes KEY=VALUE, not {pair!r}", f"--var erwartet KEY=WERT, nicht {pair!r}")
        values[key] = value
    return values


SINGLE_MAIL = ("type", "level", "to", "cc", "attach", "subject", "body", "var")
"""The options of ``enqueue`` that describe one mail; ``--batch`` takes each mail from its line instead."""


def cmd_enqueue(args: argparse.Namespace) -> int:
    if args.batch is not None:
        return enqueue_batch(args)
    from pathlib import Path

    from opos_tui.services import compose, settings
    from opos_tui.services.queue import open_queue

    if missing := [f"--{name}" for name in ("type", "to", "attach") if not getattr(args, name)]:
        text = f"enqueue needs {', '.join(missing)} (or --batch -)"
        raise UsageError(text, f"enqueue braucht {', '.join(missing)} (oder --batch -)")
    home = home_of(args)
    current = settings.load(home)
    request = compose.LetterRequest(
        type=args.type,
        level=args.level,
        to=args.to,
        cc=args.cc or [],
        attachments=[Path(a) for a in args.attach],
        subject=args.subject,
        body=args.body,
        vars=parse_vars(args.var or []),
    )
    new_item = compose.prepare(current, request)  # everything is checked before the queue is opened
    with open_queue(home) as q:
        item = q.enqueue(new_item)
    if args.json:
        print_json({"id": item.id, "message_id": item.message_id})
    else:
        print(tr(f"queued #{item.id} {item.message_id}", f"eingereiht #{item.id} {item.message_id}"))
    return EXIT_OK


def enqueue_batch(args: argparse.Namespace) -> int:
    """One mail per line (the manifest format) from standard input or a file; one JSON result per line."""
    import json

    from opos_tui.services import settings
    from opos_tui.services.batch import enqueue_lines
    from opos_tui.services.queue import open_queue

    if given := [f"--{name}" for name in SINGLE_MAIL if getattr(args, name) is not None]:
        text = f"--batch takes every mail from its line: {', '.join(given)} cannot be given with it"
        raise UsageError(text, f"--batch nimmt jede Mail aus ihrer Zeile: {', '.join(given)} nicht zusammen damit")
    home = home_of(args)
    current = settings.load(home)
    refused = False
    with contextlib.ExitStack() as stack:
        if args.batch == "-":
            lines = sys.stdin.buffer
        else:
            try:
                lines = stack.enter_context(open(args.batch, "rb"))
            except OSError as exc:
                text = f"--batch {args.batch}: {os_error_text(exc)}"
                raise UsageError(text, text) from None
        q = stack.enter_context(open_queue(home))
        for result in enqueue_lines(current, q, lines):
            refused = refused or result.error is not None
            sys.stdout.write(json.dumps(result.to_json(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
    return EXIT_FAILED if refused else EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from opos_tui.services import settings, spool
    from opos_tui.services.queue import open_queue

    home = home_of(args)
    current = settings.load(home)
    inbox = Path(args.dir) if args.dir else spool.default_inbox(home)
    with open_queue(home) as q:
        report = spool.import_spool(current, q, inbox)
    if args.json:
        print_json(
            {
                "imported": [
                    {"manifest": i.manifest, "id": i.item_id, "duplicate": i.duplicate} for i in report.imported
                ],
                "rejected": [{"manifest": r.manifest, "error": r.reason} for r in report.rejected],
                "waiting": report.waiting,
            }
        )
    else:
        for done in report.imported:
            if done.duplicate:
                print(
                    tr(
                        f"{done.manifest}: already queued as #{done.item_id}",
                        f"{done.manifest}: bereits #{done.item_id}",
                    )
                )
            else:
                print(tr(f"{done.manifest}: queued #{done.item_id}", f"{done.manifest}: eingereiht #{done.item_id}"))
        for bad in report.rejected:
            print(tr(f"{bad.manifest}: rejected: {bad.reason}", f"{bad.manifest}: abgewiesen: {bad.reason}"))
        for name in report.waiting:
            print(
                tr(
                    f"{name}: still being written, left for the next import",
                    f"{name}: wird noch geschrieben, bleibt für den nächsten Import liegen",
                )
            )
        print(
            tr(
                f"{len(report.imported)} imported, {len(report.rejected)} rejected (see {report.rejected_dir})",
                f"{len(report.imported)} eingelesen, {len(report.rejected)} abgewiesen (siehe {report.rejected_dir})",
            )
            if report.rejected
            else tr(f"{len(report.imported)} imported", f"{len(report.imported)} eingelesen")
        )
    return EXIT_FAILED if report.rejected else EXIT_OK


def row_json(row: ItemRow) -> dict[str, Any]:
    from opos_tui.services.queue import iso

    return {
        "id": row.id,
        "status": row.status.value,
        "type": row.type.value,
        "level": row.level,
        "to": list(row.to),
        "subject": row.subject,
        "attachments": list(row.attachments),
        "attempts": row.attempts,
        "error": row.error,
        "message_id": row.message_id,
        "created_at": iso(row.created_at),
        "sent_at": iso(row.sent_at),
    }


def cmd_queue(args: argparse.Namespace) -> int:
    if args.action == "migrate":
        return cmd_queue_migrate(args)
    if args.to is not None:
        raise UsageError("--to goes with: queue migrate --to URL", "--to gehört zu: queue migrate --to URL")
    from opos_tui.services.queue import LetterType, Status, open_queue

    status = Status(args.status) if args.status else None
    with open_queue(home_of(args)) as q:
        q.recover_stale()
        rows: list[ItemRow] = []
        while batch := q.page(status, offset=len(rows), limit=1000):
            rows += batch
    if args.json:
        print_json([row_json(r) for r in rows])
        return EXIT_OK
    for r in rows:
        kind = f"dunning {r.level}" if r.type is LetterType.DUNNING else r.type.value
        line = f"#{r.id:<6} {r.status.value:<9} {kind:<14} {', '.join(r.to)}  {r.subject}"
        if r.error:
            line += f"  [{r.error}]"
        print(line)
    if not rows:
        print(tr("the queue is empty", "die Warteschlange ist leer") if status is None else tr("none", "keine"))
    return EXIT_OK


def cmd_queue_migrate(args: argparse.Namespace) -> int:
    from opos_tui.services import settings
    from opos_tui.services.queue import open_postgresql
    from opos_tui.services.queue.migrate import migrate_to_postgresql

    if not args.to:
        raise UsageError("queue migrate needs --to URL", "queue migrate braucht --to URL")
    home = home_of(args)
    settings.with_value(settings.load(home), "queue.url", args.to)  # a URL queue.url takes, before anything moves
    with open_postgresql(home, args.to) as target:
        moved = migrate_to_postgresql(home.queue_db, target)
    settings.set_value(home, "queue.url", args.to)
    print(
        tr(
            f"moved {moved.items} items, {moved.attachments} attachments and {moved.history} history lines into"
            f" {args.to}; queue.url now points there ({home.queue_db} is left as it was)",
            f"{moved.items} Einträge, {moved.attachments} Anhänge und {moved.history} Verlaufszeilen nach {args.to}"
            f" verschoben; queue.url zeigt jetzt dorthin ({home.queue_db} bleibt unverändert)",
        )
    )
    return EXIT_OK


def report_action(args: argparse.Namespace, result: ActionResult, done_en: str, done_de: str) -> int:
    """What an operator action changed; items it could not change make the exit code 1."""
    if args.json:
        skipped = [{"id": i, "status": status.value} for i, status in result.skipped.items()]
        print_json({"changed": list(result.changed), "skipped": skipped})
    else:
        if result.changed:
            listed = " ".join(f"#{i}" for i in result.changed)
            print(tr(f"{done_en}: {listed}", f"{done_de}: {listed}"))
        for item_id, status in result.skipped.items():
            print(
                tr(f"#{item_id} is {status.value}: left as it is", f"#{item_id} ist {status.value}: unverändert"),
                file=sys.stderr,
            )
    return EXIT_FAILED if result.skipped else EXIT_OK


def cmd_hold(args: argparse.Namespace) -> int:
    from opos_tui.services.queue import open_queue

    with open_queue(home_of(args)) as q:
        return report_action(args, q.hold(args.ids), "held", "zurückgehalten")


def cmd_release(args: argparse.Namespace) -> int:
    from opos_tui.services.queue import open_queue

    with open_queue(home_of(args)) as q:
        return report_action(args, q.release(args.ids), "released", "freigegeben")


def cmd_retry(args: argparse.Namespace) -> int:
    if bool(args.all) == bool(args.ids):
        raise UsageError("give item numbers or --all", "Nummern oder --all angeben")
    from opos_tui.services.queue import open_queue

    with open_queue(home_of(args)) as q:
        result = q.retry(None if args.all else args.ids)
    if args.all and not result.changed and not args.json:
        print(tr("nothing to retry", "nichts zu wiederholen"))
        return EXIT_OK
    return report_action(args, result, "pending again", "wieder wartend")


def cmd_mark_sent(args: argparse.Namespace) -> int:
    from opos_tui.services.queue import open_queue

    with open_queue(home_of(args)) as q:
        return report_action(args, q.mark_sent(args.ids), "marked as sent", "als gesendet markiert")


def confirm(question: str) -> bool:
    """Ask on stderr, read the answer from stdin (a terminal or a pipe); no answer at all is a usage error."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer:
        raise UsageError("no answer on standard input: confirm with --yes", "keine Antwort: mit --yes bestätigen")
    return answer.strip().lower() in ("y", "yes", "j", "ja")


def cmd_delete(args: argparse.Namespace) -> int:
    from opos_tui.services.queue import open_queue

    with open_queue(home_of(args)) as q:
        for item_id in args.ids:
            q.get(item_id)  # unknown numbers are refused before anything is asked
        listed = " ".join(f"#{i}" for i in args.ids)
        if not args.yes and not confirm(tr(f"Delete {listed}?", f"{listed} löschen?")):
            if args.json:
                print_json({"changed": [], "skipped": []})
            else:
                print(tr("nothing deleted", "nichts gelöscht"))
            return EXIT_OK
        return report_action(args, q.delete(args.ids), "deleted", "gelöscht")


def progress_line(event: Progress) -> str:
    """The run's counts, and the mail at hand."""
    from opos_tui.services.send_run import progress_text

    current = f"  #{event.item_id} {event.recipient}" if event.item_id is not None else ""
    return progress_text(event, ", ") + current


class Terminated(Exception):
    """The process got SIGTERM (a service manager stopping it, ``kill``): handled like Ctrl+C, exit 143."""


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, where SIGTERM cancels the coroutine just as Ctrl+C does (so the mail on the wire is
    recorded honestly and the rest stays pending) and then raises :class:`Terminated`."""
    import asyncio
    import signal

    terminated = False

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None

        def on_sigterm() -> None:
            nonlocal terminated
            terminated = True
            task.cancel()

        with contextlib.suppress(NotImplementedError):  # Windows: no signal handlers in the event loop
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, on_sigterm)
        return await main

    try:
        return asyncio.run(guarded())
    except asyncio.CancelledError:
        if terminated:
            raise Terminated from None
        raise


def cmd_send(args: argparse.Namespace) -> int:
    from opos_tui.services.config_file import checked
    from opos_tui.services.queue import open_queue
    from opos_tui.services.run_result import RunResult, nothing_due

    if args.all and args.ids:
        raise UsageError("give item numbers or --all, not both", "Nummern oder --all angeben, nicht beides")
    confirmed: list[int] = args.skip_check or []
    if args.ids and (strangers := [i for i in confirmed if i not in args.ids]):
        listed = " ".join(f"#{i}" for i in strangers)
        raise UsageError(
            f"--skip-check {listed}: not among the items to send",
            f"--skip-check {listed}: nicht unter den zu sendenden Einträgen",
        )
    home = home_of(args)
    # Mostly nothing is due (cron, every minute): counting says so without the settings (with the mail package their
    # checks import), asyncio and the send run. config.toml is still checked first, unless it was accepted as it is.
    current = None if checked(home.config_file, home.config_checked) else load_settings(home)
    interrupted: KeyboardInterrupt | Terminated | None = None
    with open_queue(home) as q:
        if not args.ids and not confirmed and nothing_due(q):
            result = RunResult()
        else:
            result, interrupted = send_run(args, q, home, current or load_settings(home), confirmed)
    stopped = result.stopped.message() if result.stopped else None
    if isinstance(interrupted, Terminated):
        stopped = tr("terminated", "beendet")
    elif interrupted is not None:
        stopped = tr("interrupted", "abgebrochen")
    if args.json:
        print_json(
            {
                "ok": result.all_went and interrupted is None,
                "sent": result.sent,
                "deferred": result.deferred,
                "failed": result.failed,
                "uncertain": result.uncertain,
                "held": result.held,
                "not_sendable": result.not_sendable,
                "left": result.left,
                "stopped": stopped,
            }
        )
    if result.stopped is not None:
        print(f"opos-tui: {result.stopped}", file=sys.stderr)
    for item_id in result.not_sendable:
        print(tr(f"#{item_id} is not pending: not sent", f"#{item_id} wartet nicht: nicht gesendet"), file=sys.stderr)
    for item_id in result.held:
        print(
            tr(
                f"#{item_id} held back: it failed the plausibility check (see its history); if its attachment is"
                f" right, release it and send it with --skip-check {item_id}",
                f"#{item_id} zurückgehalten: Plausibilitätsprüfung nicht bestanden (siehe Verlauf); ist der Anhang"
                f" richtig, freigeben und mit --skip-check {item_id} senden",
            ),
            file=sys.stderr,
        )
    if not args.json:
        en = (
            f"{len(result.sent)} sent, {len(result.deferred)} deferred, {len(result.failed)} failed,"
            f" {len(result.uncertain)} uncertain"
        )
        de = (
            f"{len(result.sent)} gesendet, {len(result.deferred)} zurückgestellt, {len(result.failed)}"
            f" fehlgeschlagen, {len(result.uncertain)} unsicher"
        )
        if result.held:
            en += f", {len(result.held)} held"
            de += f", {len(result.held)} zurückgehalten"
        if interrupted is not None:
            en += f", {result.left} left pending"
            de += f", {result.left} weiter wartend"
        print(tr(en, de), flush=True)
    if interrupted is not None:
        raise interrupted
    return EXIT_OK if result.all_went else EXIT_FAILED


def load_settings(home: Home) -> settings.Settings:
    from opos_tui.services import settings

    return settings.load(home)


def send_run(
    args: argparse.Namespace, q: Queue, home: Home, current: settings.Settings, confirmed: list[int]
) -> tuple[RunResult, KeyboardInterrupt | Terminated | None]:
    """``send``'s run, its progress on the terminal: what it did, and the Ctrl+C or SIGTERM that ended it."""
    from opos_tui.services.dispatcher import Outcome, Progress
    from opos_tui.services.send_run import SendRun

    on_terminal = sys.stderr.isatty()
    width = 0

    def show(event: RunEvent) -> None:
        nonlocal width
        if not isinstance(event, Progress):
            return
        if on_terminal:
            line = progress_line(event)[:200]
            sys.stderr.write("\r" + line.ljust(width))
            sys.stderr.flush()
            width = len(line)
        elif not args.json and event.outcome not in (Outcome.SENDING, Outcome.STOPPED):
            sys.stdout.write(f"#{event.item_id} {event.outcome.value}: {event.reply}\n")  # one write per line

    run = SendRun(q, home, settings=current, on_event=show, on_interaction=sign_in_on_terminal(current, home))
    try:
        return run_stoppable(run.run(args.ids or None, skip_check=confirmed)), None
    except (KeyboardInterrupt, Terminated) as exc:
        return run.result, exc
    finally:
        if on_terminal and width:
            sys.stderr.write("\n")  # the summary below starts on a line of its own
            sys.stderr.flush()


# --- OAuth 2.0 sign-in ----------------------------------------------------------------------------------


def dialog_allowed(current: settings.Settings) -> bool:
    """``oauth-dialog`` on a terminal: a person may be asked to sign in. Without a terminal (cron) it is
    ``oauth``: no device code is even requested. The sign-in package (and its HTTP client) is imported only
    for ``oauth-dialog``."""
    if current.auth.method != "oauth-dialog":
        return False
    from opos_tui.services import signin

    return signin.has_terminal()


def device_code_text(code: DeviceCode) -> str:
    minutes = max(int(code.expires_at - time.time()), 0) // 60
    return tr(
        f"Sign in to send: open {code.verification_uri} on any device and enter the code {code.user_code}"
        f" (valid for {minutes} min; Ctrl+C cancels)",
        f"Zum Senden anmelden: {code.verification_uri} auf einem beliebigen Gerät öffnen und den Code"
        f" {code.user_code} eingeben (gültig {minutes} Min.; Strg+C bricht ab)",
    )


def authorize_text(authorization: Authorization) -> str:
    return tr(
        f"Sign in to send: open this address in a browser:\n{authorization.url}\nOn this machine the sign-in"
        " completes by itself; over SSH paste the address the browser ends on (its page will not load) and press"
        " Enter. Ctrl+C cancels.",
        f"Zum Senden anmelden: diese Adresse im Browser öffnen:\n{authorization.url}\nAuf diesem Rechner schließt"
        " die Anmeldung von selbst ab; über SSH die Adresse einfügen, auf der der Browser endet (ihre Seite lädt"
        " nicht), und Enter drücken. Strg+C bricht ab.",
    )


def read_pasted(authorization: Authorization) -> None:
    """Hand every line typed or piped on stdin to the sign-in as a pasted address, in a daemon thread that
    reads the descriptor itself (no buffered lock held), so the process still exits with stdin left open."""

    import os
    import threading

    def read() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(0, 4096)
            except OSError:
                return
            if not chunk:
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                authorization.paste(line.decode("utf-8", "replace"))

    threading.Thread(target=read, name="pasted-address", daemon=True).start()


def sign_in_on_stderr(signin: SignIn, stop: threading.Event | None = None) -> Token:
    """The device code (Microsoft) or the authorization address (Google) on stderr, then wait until the
    person has signed in."""
    from opos_tui.services.signin import GoogleSignIn, wait_for_sign_in

    if isinstance(signin, GoogleSignIn):
        authorization = signin.begin()
        print(authorize_text(authorization), file=sys.stderr, flush=True)
        read_pasted(authorization)
        token = signin.wait(authorization, stop)
    else:
        code = signin.start()
        print(device_code_text(code), file=sys.stderr, flush=True)
        token = wait_for_sign_in(signin, code, stop)
    print(tr(f"signed in as {token.account}", f"angemeldet als {token.account}"), file=sys.stderr, flush=True)
    return token


def sign_in_if_needed(current: settings.Settings, home: Home) -> None:
    from opos_tui.services.signin import has_usable_token, sign_in_for

    signin = sign_in_for(current, home)
    if not has_usable_token(signin):
        sign_in_on_stderr(signin)


def sign_in_on_terminal(current: settings.Settings, home: Home) -> InteractionHandler | None:
    """For ``send``: with ``oauth-dialog`` on a terminal, a run that needs a sign-in prints the address and
    code, waits, and goes on; otherwise None (the run stops, everything pending)."""
    if not dialog_allowed(current):
        return None

    async def handler(_needed: OposError) -> bool:
        import asyncio
        import threading

        from opos_tui.services.signin import sign_in_for

        signin = sign_in_for(current, home)
        stop = threading.Event()
        try:
            await asyncio.to_thread(sign_in_on_stderr, signin, stop)
        finally:
            stop.set()  # Ctrl+C: the polling thread ends too
        return True

    return handler


def cmd_oauth_login(args: argparse.Namespace) -> int:
    from opos_tui.services import settings
    from opos_tui.services.signin import GoogleSignIn, sign_in_for, wait_for_sign_in

    home = home_of(args)
    signin = sign_in_for(settings.load(home), home)
    if isinstance(signin, GoogleSignIn):
        authorization = signin.begin()
        if args.json:
            emit({"event": "authorize_url", "url": authorization.url})
        else:
            print(authorize_text(authorization), flush=True)
        read_pasted(authorization)
        token = signin.wait(authorization)
    else:
        code = signin.start()
        if args.json:
            emit(
                {
                    "event": "device_code",
                    "verification_uri": code.verification_uri,
                    "user_code": code.user_code,
                    "expires_in": max(int(code.expires_at - time.time()), 0),
                }
            )
        else:
            print(device_code_text(code), flush=True)
        token = wait_for_sign_in(signin, code)
    if args.json:
        emit({"event": "signed_in", "account": token.account, "expires_at": int(token.expires_at)})
    else:
        print(tr(f"signed in as {token.account}", f"angemeldet als {token.account}"), flush=True)
    return EXIT_OK


def emit(event: dict[str, Any]) -> None:
    """One JSON object on one line, flushed at once (``oauth login --json``)."""
    import json

    sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def cmd_oauth_logout(args: argparse.Namespace) -> int:
    from opos_tui.services import settings
    from opos_tui.services.signin import sign_in_for

    home = home_of(args)
    if sign_in_for(settings.load(home), home).sign_out():
        print(tr("signed out; the cached tokens are deleted", "abgemeldet; die gespeicherten Tokens sind gelöscht"))
    else:
        print(tr("nobody was signed in", "niemand war angemeldet"))
    return EXIT_OK


def cmd_oauth_status(args: argparse.Namespace) -> int:
    from opos_tui.services import settings
    from opos_tui.services.signin import status

    home = home_of(args)
    found = status(settings.load(home), home)
    # Not configured: the report still comes (nobody signed in, and why), with login's exit code for it.
    done = EXIT_OK if found.configured else EXIT_USAGE
    if args.json:
        print_json(found.to_json())
        return done
    if found.signed_in:
        expires = iso_time(found.expires_at)
        print(
            tr(
                f"{found.provider}: signed in as {found.account} (token valid until {expires})",
                f"{found.provider}: angemeldet als {found.account} (Token gültig bis {expires})",
            )
        )
    else:
        print(
            tr(
                f"{found.provider}: not signed in (opos-tui oauth login)",
                f"{found.provider}: nicht angemeldet (opos-tui oauth login)",
            )
        )
    print(tr(f"token cache: {found.cache}", f"Token-Cache: {found.cache}"))
    if found.problem:
        print(found.problem)
    print(tr(f"proxy: {found.proxy}", f"Proxy: {found.proxy}"))
    return done


def iso_time(epoch: float | None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds") if epoch else "-"


# --- TUI ----------------------------------------------------------------------------------------------


def run_tui(args: argparse.Namespace, start: StartScreen) -> int:
    home = home_of(args)
    # A broken config.toml is reported plainly, not as a traceback in the TUI: it is checked once the first
    # page is painted, ending the TUI with its message.
    from opos_tui.app import OposApp

    app = OposApp(home=home, start=start, check_config=True)
    app.run()
    if app.config_error is not None:
        raise app.config_error
    return app.return_code or EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    return run_tui(args, "main")


def cmd_settings(args: argparse.Namespace) -> int:
    pages: dict[str, StartScreen] = {"email": "settings", "letters": "letters", "reports": "reports"}
    return run_tui(args, pages[args.page])


# --- demo, doctor, unattended operation ------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """A throw-away (or ``--home``) installation with its own mail server, opened in the TUI."""
    import os
    import tempfile
    from contextlib import ExitStack
    from pathlib import Path

    from opos_tui.services import demo, secrets
    from opos_tui.services.home import Home

    # Only an explicit --home: $OPOS_TUI_HOME may be the real installation, which the demo must not touch.
    explicit = getattr(args, "home", None)
    if args.received:
        if not explicit:
            raise UsageError(
                "--received needs the --home DIR of a kept demo", "--received braucht --home DIR einer Demo"
            )
        return show_received(Home.resolve(explicit), args.json)
    os.environ[secrets.SECRETS_ENV] = "file"  # this home's file store, never the user's keyring
    with ExitStack() as stack:
        if explicit:
            home = Home.resolve(explicit)
        else:
            home = Home(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="opos-tui-demo-"))) / "home")
        with demo.start(home):
            from opos_tui.demo_app import DemoApp

            app = DemoApp(home)
            app.run()
        print(demo.received_summary(list(demo.received(home))))
        if explicit:
            print(
                tr(
                    f"Kept in {home.root}: opos-tui demo --home {home.root} --received lists what arrived.",
                    f"Behalten in {home.root}: opos-tui demo --home {home.root} --received zeigt, was ankam.",
                )
            )
    return app.return_code or EXIT_OK


def show_received(home: Home, as_json: bool) -> int:
    from dataclasses import asdict

    from opos_tui.services import demo

    if not demo.demo_dir(home).is_dir():
        raise UsageError(f"{home.root} is not a demo home", f"{home.root} ist kein Demo-Ordner")
    events = list(demo.received(home))
    if as_json:
        print_json([asdict(e) for e in events])
        return EXIT_OK
    for e in events:
        line = f"{e.at}  {e.reply}  {', '.join(e.recipients)}"
        if e.accepted:
            line += f"  {e.subject}  [{', '.join(e.attachments or ())}]  {demo.received_dir(home) / e.file}"
        print(line)
    print(demo.received_summary(events))
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    """Every check an admin needs when mail does not go out; exit 1 if any failed."""
    import asyncio

    from opos_tui.services.doctor import Level, run_checks

    checks = asyncio.run(run_checks(home_of(args)))
    ok = all(c.status is not Level.FAIL for c in checks)
    if args.json:
        print_json({"checks": [c.to_json() for c in checks], "ok": ok})
    else:
        for c in checks:
            print(f"{c.status.value:<5}{c.name:<18}{c.detail}")
            if c.fix and c.status is not Level.OK:
                print(f"{'':<23}{tr('fix', 'Abhilfe')}: {c.fix}")
    return EXIT_OK if ok else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    """Import the spool and send what is due, every --interval seconds, until SIGTERM or Ctrl+C."""
    import asyncio

    from opos_tui.services.unattended import run_unattended

    if not 1 <= args.interval <= 86400:
        raise UsageError("--interval takes 1 to 86400 seconds", "--interval: 1 bis 86400 Sekunden")
    return asyncio.run(run_unattended(home_of(args), args.interval, once=args.once))


# --- parser -------------------------------------------------------------------------------------------


class Formatter(argparse.HelpFormatter):
    """argparse's layout of help, given the terminal's width. Left to itself, argparse would import shutil to
    ask for it, with shutil's compression modules, each time it makes a formatter: for every option a parser is
    given, so in every command's start, help or not."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=terminal_columns() - 2)


def terminal_columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` tells it: ``$COLUMNS``, else standard output's,
    else 80."""
    import os

    with contextlib.suppress(KeyError, ValueError):
        if (columns := int(os.environ["COLUMNS"])) > 0:
            return columns
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns if stdout else 0) or 80
    except (ValueError, OSError):
        return 80


class Parser(argparse.ArgumentParser):
    """An argument parser whose epilog may be computed when its help is shown (``epilog_of``): the keys
    ``config set`` takes come from the settings model, which only that help should pay for."""

    def __init__(self, *args: Any, epilog_of: Callable[[], str] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)
        self.epilog_of = epilog_of

    def format_help(self) -> str:
        if self.epilog_of is not None:
            self.epilog = self.epilog_of()
        return super().format_help()


Commands: TypeAlias = "argparse._SubParsersAction[Parser]"
"""Where a command's parser is added."""
AddCommand = Callable[[Commands, Parser], None]


def config_keys_help() -> str:
    from opos_tui.services import settings

    return "keys: " + ", ".join(settings.KEYS)


def common_options() -> Parser:
    """--home and --lang, accepted before or after the command name."""
    common = Parser(add_help=False)
    common.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="installation folder (default: $OPOS_TUI_HOME or the user data folder)",
    )
    common.add_argument(
        "--lang",
        choices=LANGS,
        default=argparse.SUPPRESS,
        help="language of messages and the TUI (default: from the locale)",
    )
    return common


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")


def _add_settings(sub: Commands, common: Parser) -> None:
    p = sub.add_parser("settings", parents=[common], help="open the TUI on the settings form")
    p.add_argument(
        "--page",
        choices=["email", "letters", "reports"],
        default="email",
        help="email: the E-Mail form (default); letters: global letter report settings; reports: per report",
    )
    p.set_defaults(handler=cmd_settings)


def _add_test_connection(sub: Commands, common: Parser) -> None:
    p = sub.add_parser(
        "test-connection",
        parents=[common],
        help="run the SMTP handshake stage by stage with the saved settings (or check the local mail program)",
        description="Connect, greet, EHLO, TLS and AUTH with the saved settings and report each stage; for "
        "windows, outlook and sendmail check that the mail program is there and what it would use, without "
        "sending. Exit 0 if the connection works, 1 if not.",
    )
    p.add_argument("--send-test-to", metavar="ADDR", help="also send a small test mail to this address")
    add_json(p)
    p.set_defaults(handler=cmd_test_connection)


def _add_config(sub: Commands, common: Parser) -> None:
    config = sub.add_parser("config", parents=[common], help="show or change the settings")
    config.set_defaults(handler=lambda _args: _usage(config))
    csub = config.add_subparsers(title="config commands", metavar="ACTION")
    p = csub.add_parser("show", parents=[common], help="effective settings; secrets only as set/unset")
    add_json(p)
    p.set_defaults(handler=cmd_config_show)
    p = csub.add_parser("get", parents=[common], help="one setting's value")
    p.add_argument("key", metavar="KEY")
    add_json(p)
    p.set_defaults(handler=cmd_config_get)
    p = csub.add_parser("set", parents=[common], help="validate and save one setting", epilog_of=config_keys_help)
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p.set_defaults(handler=cmd_config_set)
    p = csub.add_parser("set-password", parents=[common], help="store the login password (Passwort)")
    p.add_argument("--stdin", action="store_true", help="read it from standard input (one line)")
    p.set_defaults(handler=cmd_config_set_password)
    p = csub.add_parser("set-secret", parents=[common], help="store a secret, e.g. oauth.client_secret")
    p.add_argument("name", metavar="NAME", help=", ".join(SECRET_NAMES))
    p.add_argument("--stdin", action="store_true", help="read it from standard input (one line)")
    p.set_defaults(handler=cmd_config_set_secret)
    p = csub.add_parser("delete-secret", parents=[common], help="remove a stored secret")
    p.add_argument("name", metavar="NAME", help=", ".join(SECRET_NAMES))
    p.set_defaults(handler=cmd_config_delete_secret)


def _add_enqueue(sub: Commands, common: Parser) -> None:
    p = sub.add_parser(
        "enqueue",
        parents=[common],
        help="queue one payment advice or dunning letter (or many: --batch -)",
        description="Queue one mail from the options, or with --batch one mail per line of JSON in the spool "
        "manifest format (attachment paths relative to the current folder). A batch prints one JSON line per "
        'input line, {"line", "id", "message_id"} or {"line", "error"}, and exits 1 if any line was refused; '
        "each line is queued whole or not at all.",
    )
    p.add_argument("--type", metavar="TYPE", help="payment-advice or dunning")
    p.add_argument("--level", type=int, metavar="1..9", help="dunning level")
    p.add_argument("--to", action="append", metavar="ADDR", help="recipient, also 'Name <addr>'")
    p.add_argument("--cc", action="append", metavar="ADDR", help="copy recipient")
    p.add_argument("--attach", action="append", metavar="FILE", help="a PDF (or other file)")
    p.add_argument("--subject", metavar="TEXT", help="own subject instead of the template's")
    p.add_argument("--body", metavar="TEXT", help="own body instead of the template's")
    p.add_argument("--var", action="append", metavar="KEY=VALUE", help="a placeholder value, e.g. customer_name=…")
    p.add_argument(
        "--batch", metavar="FILE", help="many mails: one JSON manifest per line from FILE ('-': standard input)"
    )
    add_json(p)
    p.set_defaults(handler=cmd_enqueue)


def _add_import(sub: Commands, common: Parser) -> None:
    p = sub.add_parser("import", parents=[common], help="queue the manifests in the spool folder")
    p.add_argument("dir", nargs="?", metavar="DIR", help="spool inbox (default: $OPOS_TUI_HOME/spool/inbox)")
    add_json(p)
    p.set_defaults(handler=cmd_import)


def _add_queue(sub: Commands, common: Parser) -> None:
    p = sub.add_parser(
        "queue",
        parents=[common],
        help="list the queue; queue migrate --to URL moves it into PostgreSQL",
        description="Lists the queue. 'queue migrate --to postgresql://...' moves the home's SQLite queue with every "
        "item, attachment and history line into an unused PostgreSQL database and points queue.url there.",
    )
    p.add_argument("action", nargs="?", choices=["migrate"], help="migrate: move the queue into PostgreSQL (--to)")
    p.add_argument("--to", metavar="URL", help="with migrate: the PostgreSQL database (a libpq URI)")
    p.add_argument("--status", choices=STATUSES, metavar="S", help="only items in this state")
    add_json(p)
    p.set_defaults(handler=cmd_queue)


def _add_retry(sub: Commands, common: Parser) -> None:
    p = sub.add_parser("retry", parents=[common], help="deferred, failed or uncertain items back to pending")
    p.add_argument("ids", nargs="*", type=int, metavar="ID")
    p.add_argument("--all", action="store_true", help="every deferred, failed and uncertain item")
    add_json(p)
    p.set_defaults(handler=cmd_retry)


def _add_delete(sub: Commands, common: Parser) -> None:
    p = sub.add_parser("delete", parents=[common], help="delete unsent items")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")
    p.add_argument("--yes", action="store_true", help="do not ask")
    add_json(p)
    p.set_defaults(handler=cmd_delete)


def _add_send(sub: Commands, common: Parser) -> None:
    p = sub.add_parser("send", parents=[common], help="send pending items (all, or the given ones)")
    p.add_argument("ids", nargs="*", type=int, metavar="ID")
    p.add_argument("--all", action="store_true", help="every pending item (the default)")
    p.add_argument(
        "--skip-check",
        nargs="+",
        action="extend",
        type=int,
        metavar="ID",
        help="send these items although they fail the plausibility check (after the item numbers)",
    )
    add_json(p)
    p.set_defaults(handler=cmd_send)


def _add_oauth(sub: Commands, common: Parser) -> None:
    oauth = sub.add_parser("oauth", parents=[common], help="OAuth 2.0 sign-in for sending (Microsoft, Google)")
    oauth.set_defaults(handler=lambda _args: _usage(oauth))
    osub = oauth.add_subparsers(title="oauth commands", metavar="ACTION")
    p = osub.add_parser(
        "login",
        parents=[common],
        help="sign in: shows the address and code to enter on any device, waits until done",
        description="Exit 0 signed in, 1 refused or expired, 2 not configured, 130 cancelled (Ctrl+C).",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line as it happens")
    p.set_defaults(handler=cmd_oauth_login)
    p = osub.add_parser("logout", parents=[common], help="sign out: delete the cached tokens")
    p.set_defaults(handler=cmd_oauth_logout)
    p = osub.add_parser("status", parents=[common], help="who is signed in, where tokens are kept, the proxy")
    add_json(p)
    p.set_defaults(handler=cmd_oauth_status)


def _add_demo(sub: Commands, common: Parser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="try it: a throw-away installation with its own mail server and a queue of letters",
        description="Starts a mail server on 127.0.0.1 inside this process (STARTTLS, password login), configures "
        "a throw-away home folder for it (or --home DIR, to keep it), fills the queue with a dozen letters and "
        "opens the queue screen. Needs no network.",
    )
    p.add_argument("--received", action="store_true", help="list what the server of a kept demo (--home) received")
    add_json(p)
    p.set_defaults(handler=cmd_demo)


def _add_doctor(sub: Commands, common: Parser) -> None:
    p = sub.add_parser(
        "doctor",
        parents=[common],
        help="check settings, secrets, the mail server, the queue and the spool; each with its fix",
        description="Each check is OK, WARN or FAIL, with the fix in one line; exit 1 if any check fails.",
    )
    add_json(p)
    p.set_defaults(handler=cmd_doctor)


def _add_run(sub: Commands, common: Parser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="unattended: import the spool and send what is due, again and again, until stopped",
        description="Each round imports the spool inbox and sends the pending mails and the deferred ones whose "
        "backoff is over; SIGTERM or Ctrl+C stop it after the mails on the wire. One run per home at a time. "
        "Logs to logs/opos-tui.log in the home (and to stderr under systemd).",
    )
    p.add_argument("--interval", type=float, default=60.0, metavar="SECONDS", help="time between rounds (60)")
    p.add_argument("--once", action="store_true", help="one round, then exit (for cron and timers)")
    p.set_defaults(handler=cmd_run)


def _add_item_action(name: str, handler: Handler, text: str) -> AddCommand:
    """An operator action on the items given by number (hold, release, mark-sent)."""

    def add(sub: Commands, common: Parser) -> None:
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("ids", nargs="+", type=int, metavar="ID")
        add_json(p)
        p.set_defaults(handler=handler)

    return add


COMMANDS: dict[str, AddCommand] = {
    "settings": _add_settings,
    "test-connection": _add_test_connection,
    "config": _add_config,
    "enqueue": _add_enqueue,
    "import": _add_import,
    "queue": _add_queue,
    "hold": _add_item_action("hold", cmd_hold, "hold items back (pending or deferred)"),
    "release": _add_item_action("release", cmd_release, "release held items"),
    "mark-sent": _add_item_action("mark-sent", cmd_mark_sent, "mark uncertain items as sent (they did arrive)"),
    "retry": _add_retry,
    "delete": _add_delete,
    "send": _add_send,
    "oauth": _add_oauth,
    "demo": _add_demo,
    "doctor": _add_doctor,
    "run": _add_run,
}
"""Every command and what adds its parser, in the order ``--help`` lists them."""


def named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is neither an option nor the value of ``--home`` or
    ``--lang`` (also abbreviated, as argparse takes them). ``""`` when it names none and asks for no help (the
    TUI); None when that word is no command, or for help: then every command's parser is needed."""
    value_next = False
    for word in argv:
        if value_next:
            value_next = False
        elif word == "--":
            return None
        elif word.startswith("-"):
            value_next = "=" not in word and len(word) > 2 and any(o.startswith(word) for o in ("--home", "--lang"))
        else:
            return word if word in COMMANDS else None
    asks_help = any(word == "-h" or (len(word) > 2 and "--help".startswith(word)) for word in argv)
    return None if asks_help else ""


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. Given the ``argv`` it is to parse, only the parser of the command named there
    is built (none for the TUI): building all of them costs every start more than parsing does. Without
    ``argv``, for help, or when ``argv`` names no command (a typo), all of them."""
    common = common_options()
    parser = Parser(
        prog="opos-tui",
        description="E-mail dispatch of payment advices and dunning letters (OPOS): settings, queue, sending.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"opos-tui {__version__}")
    parser.set_defaults(handler=cmd_tui)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    wanted = named_command(argv) if argv is not None else None
    for name, add in COMMANDS.items():
        if wanted in (None, name):
            add(sub, common)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: choose an action", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    set_lang(getattr(args, "lang", None))
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(tr("interrupted", "abgebrochen"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print(tr("terminated", "beendet"), file=sys.stderr)
        return EXIT_TERMINATED
    except OposError as exc:
        print(f"opos-tui: {exc}", file=sys.stderr)
        return exit_code(exc.category)
    except OSError as exc:  # the last resort for the environment (permissions, a full disk): one line
        print(f"opos-tui: {os_error_text(exc)}", file=sys.stderr)
        return EXIT_FAILED


START_SECONDS = 1.0
"""How long the garbage collector stays off at the start (:func:`run`)."""


def run() -> NoReturn:
    """The ``opos-tui`` program: :func:`main`, then exit with its code.

    Python's garbage collector is off for the first :data:`START_SECONDS`: the start imports much (the mail
    package, the queue, asyncio; pydantic where config.toml is checked) and frees next to nothing, so a collection
    meanwhile only walks what stays, which costs a short command a tenth of its time. Every command that runs
    longer (the TUI, a send run, a loop over many mails) collects from then on, what it makes from then on: what
    the start made is frozen out of the collector first (``gc.freeze``), else the first collections walked all
    of it (7 collections, about 20 ms of a send run of 1,000 mails, against below 1 ms). Before exiting,
    everything is frozen out of the collector (``gc.freeze``) for the same reason: Python's exit would walk it
    all once more. Nothing the program writes depends on either: files and the queue are closed by the
    commands themselves, the log by ``logging``'s exit handler, which still runs.
    """
    import threading

    gc.disable()
    collect_later = threading.Timer(START_SECONDS, _collect_from_now)
    collect_later.daemon = True
    collect_later.start()
    code = main()
    collect_later.cancel()
    gc.freeze()
    sys.exit(code)


def _collect_from_now() -> None:
    gc.freeze()
    gc.enable()


def os_error_text(exc: OSError) -> str:
    """``Permission denied: /path`` rather than ``[Errno 13] Permission denied: '/path'``."""
    names = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    reason = exc.strerror or str(exc)
    return f"{reason}: {names}" if names else reason
