"""The command line: parse, call the services, print for a person or as ``--json``; exit codes.

Exit codes everywhere: 0 success, 1 the operation failed (server said no, mail not sent), 2 bad usage or
bad input, 130 interrupted. Textual is imported only by the commands that open the TUI, so ``--help`` and
scripted commands start fast.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opos_tui import __version__, settings
from opos_tui.i18n import LANGS, set_lang, tr
from opos_tui.services import secrets
from opos_tui.services.errors import ConfigError, OposError
from opos_tui.services.home import Home

if TYPE_CHECKING:
    from opos_tui.app import StartScreen

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad input on the command line: one clear line on stderr, exit 2."""


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")


def home_of(args: argparse.Namespace) -> Home:
    return Home.resolve(getattr(args, "home", None))


# --- config -------------------------------------------------------------------------------------------


def settings_report(home: Home) -> dict[str, Any]:
    """Effective settings as nested JSON, secrets only as set/unset, and where they are kept."""
    current = settings.load(home)
    store = secrets.open_store(home)
    data: dict[str, Any] = current.model_dump(mode="json")
    data["auth"]["password_set"] = store.get(secrets.PASSWORD) is not None
    data["oauth"]["client_secret_set"] = store.get(secrets.GOOGLE_CLIENT_SECRET) is not None
    data["home"] = str(home.root)
    data["config_file"] = str(home.config_file)
    data["secret_store"] = {"kind": store.kind, "description": store.describe()}
    return data


def cmd_config_show(args: argparse.Namespace) -> int:
    report = settings_report(home_of(args))
    if args.json:
        print_json(report)
        return EXIT_OK
    shown = {"auth.password_set", "oauth.client_secret_set"}
    for key in [*settings.KEYS, *sorted(shown)]:
        section, _, name = key.rpartition(".")
        value = report[section][name] if section else report[name]
        if key in shown:
            value = tr("set", "gesetzt") if value else tr("unset", "nicht gesetzt")
        print(f"{key} = {settings.format_value(value)}")
    print(f"# home: {report['home']}")
    print(f"# secrets: {report['secret_store']['description']}")
    return EXIT_OK


def cmd_config_get(args: argparse.Namespace) -> int:
    value = settings.get_value(settings.load(home_of(args)), args.key)
    if args.json:
        print_json({args.key: value})
    else:
        print(settings.format_value(value))
    return EXIT_OK


def cmd_config_set(args: argparse.Namespace) -> int:
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
        value = getpass.getpass(f"{label}: ")
    else:
        raise UsageError(
            tr("standard input is not a terminal: use --stdin", "Eingabe ist kein Terminal: --stdin verwenden")
        )
    if not value:
        raise UsageError(tr(f"no {label} given; nothing changed", f"kein {label} angegeben; nichts geändert"))
    return value


def store_secret(args: argparse.Namespace, name: str, label: str) -> int:
    home = home_of(args)
    store = secrets.open_store(home)
    store.set(name, read_secret(args, label))
    print(tr(f"{label} saved in the {store.describe()}", f"{label} gespeichert: {store.describe()}"))
    return EXIT_OK


def cmd_config_set_password(args: argparse.Namespace) -> int:
    return store_secret(args, secrets.PASSWORD, tr("password", "Passwort"))


def cmd_config_set_secret(args: argparse.Namespace) -> int:
    if args.name not in secrets.SECRET_NAMES:
        raise UsageError(f"unknown secret '{args.name}'; known: {', '.join(secrets.SECRET_NAMES)}")
    return store_secret(args, args.name, args.name)


def cmd_config_delete_secret(args: argparse.Namespace) -> int:
    if args.name not in secrets.SECRET_NAMES:
        raise UsageError(f"unknown secret '{args.name}'; known: {', '.join(secrets.SECRET_NAMES)}")
    secrets.open_store(home_of(args)).delete(args.name)
    print(tr(f"{args.name} removed", f"{args.name} entfernt"))
    return EXIT_OK


# --- connection test ----------------------------------------------------------------------------------

EVENT_MARKS = {"ok": "ok", "warning": "warn", "failed": "FAIL"}


def cmd_test_connection(args: argparse.Namespace) -> int:
    import asyncio

    from opos_tui.services.connection_test import HandshakeEvent, run_connection_test

    home = home_of(args)
    current = settings.load(home)
    store = secrets.open_store(home)

    def show(event: HandshakeEvent) -> None:
        print(f"{event.stage:<8}{EVENT_MARKS[event.status]:<5}{event.summary}", flush=True)

    result = asyncio.run(
        run_connection_test(current, store, send_test_to=args.send_test_to, on_event=None if args.json else show)
    )
    if args.json:
        print_json(result.to_json())
    return EXIT_OK if result.ok else EXIT_FAILED


# --- TUI ----------------------------------------------------------------------------------------------


def run_tui(args: argparse.Namespace, start: StartScreen) -> int:
    home = home_of(args)
    settings.load(home)  # a broken config.toml is reported here, plainly, not as a traceback in the TUI
    from opos_tui.app import OposApp

    OposApp(home=home, start=start).run()
    return EXIT_OK


def cmd_tui(args: argparse.Namespace) -> int:
    return run_tui(args, "main")


def cmd_settings(args: argparse.Namespace) -> int:
    return run_tui(args, "settings")


# --- parser -------------------------------------------------------------------------------------------


def common_options() -> argparse.ArgumentParser:
    """--home and --lang, accepted before or after the command name."""
    common = argparse.ArgumentParser(add_help=False)
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


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="opos-tui",
        description="E-mail dispatch of payment advices and dunning letters (OPOS): settings, queue, sending.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"opos-tui {__version__}")
    parser.set_defaults(handler=cmd_tui)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("settings", parents=[common], help="open the TUI on the settings form")
    p.set_defaults(handler=cmd_settings)

    p = sub.add_parser(
        "test-connection",
        parents=[common],
        help="run the SMTP handshake stage by stage with the saved settings",
        description="Connect, greet, EHLO, TLS and AUTH with the saved settings and report each stage; "
        "exit 0 if the connection works, 1 if not.",
    )
    p.add_argument("--send-test-to", metavar="ADDR", help="also send a small test mail to this address")
    add_json(p)
    p.set_defaults(handler=cmd_test_connection)

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
    keys_help = "keys: " + ", ".join(settings.KEYS)
    p = csub.add_parser("set", parents=[common], help="validate and save one setting", epilog=keys_help)
    p.add_argument("key", metavar="KEY")
    p.add_argument("value", metavar="VALUE")
    p.set_defaults(handler=cmd_config_set)
    p = csub.add_parser("set-password", parents=[common], help="store the login password (Passwort)")
    p.add_argument("--stdin", action="store_true", help="read it from standard input (one line)")
    p.set_defaults(handler=cmd_config_set_password)
    p = csub.add_parser("set-secret", parents=[common], help="store a secret, e.g. oauth.client_secret")
    p.add_argument("name", metavar="NAME", help=", ".join(secrets.SECRET_NAMES))
    p.add_argument("--stdin", action="store_true", help="read it from standard input (one line)")
    p.set_defaults(handler=cmd_config_set_secret)
    p = csub.add_parser("delete-secret", parents=[common], help="remove a stored secret")
    p.add_argument("name", metavar="NAME", help=", ".join(secrets.SECRET_NAMES))
    p.set_defaults(handler=cmd_config_delete_secret)
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: choose an action", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    set_lang(getattr(args, "lang", None))
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(tr("interrupted", "abgebrochen"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except (UsageError, ConfigError) as exc:
        print(f"opos-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OposError as exc:
        print(f"opos-tui: {exc}", file=sys.stderr)
        return EXIT_FAILED
