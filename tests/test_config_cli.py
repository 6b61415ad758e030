"""`opos-tui config …`: every key round-trips, every bad value is refused and leaves the file as it was."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from opos_tui.services import settings
from opos_tui.services.home import Home
from tests.conftest import Cli, file_bytes, in_a_process, mode_of

GOOD_VALUES = {
    "connection": ["windows", "outlook", "smtp", "sendmail"],
    "sendmail.path": ["/usr/sbin/sendmail", "/usr/local/sbin/sendmail"],
    "auth.method": ["none", "password", "oauth", "oauth-dialog"],
    "auth.profile": ["buchhaltung@example.com"],
    "oauth.provider": ["google", "microsoft"],
    "oauth.client_id": ["0f6e3c5a-1b2c-4d5e-8f90-123456789abc"],
    "oauth.tenant_id": ["contoso.onmicrosoft.com"],
    "oauth.authority_url": ["https://login.microsoftonline.us"],
    "oauth.google_auth_url": ["https://accounts.google.com/o/oauth2/auth"],
    "oauth.google_token_url": ["https://oauth2.googleapis.com/token"],
    "oauth.proxy": ["http://proxy.example.com:3128", ""],
    "smtp.host": ["mail.example.com", "127.0.0.1"],
    "smtp.port": ["1", "465", "65535"],
    "smtp.security": ["None", "Auto", "SslOnConnect", "StartTls", "StartTlsWhenAvailable"],
    "smtp.timeout": ["5", "120"],
    "smtp.allow_plain_auth": ["true", "false"],
    "sender.address": ["buchhaltung@müller-gmbh.de", ""],
    "sender.name": ["Müller GmbH – Buchhaltung"],
    "sender.reply_to": ["opos@example.com"],
    "sender.bcc": ["archiv@example.com"],
    "smtp.max_message_mb": ["1", "25", "1000"],
    "smtp.connections": ["1", "3"],
    "smtp.max_per_minute": ["0", "30"],
    "retry.backoff_minutes": ["5", "1"],
    "retry.max_backoff_minutes": ["60", "120"],
    "retry.give_up_days": ["5", "1"],
    "queue.url": [
        "postgresql://opos@db.example.test:5432/opos?sslmode=verify-full",
        "postgresql:///opos?host=/run/postgresql&user=opos",
        "",
    ],
    "letters.language": ["de", "en"],
    "letters.subject": ["Ihr Beleg ${document_number}", ""],
    "letters.body": ["Guten Tag ${customer_name},\n\nanbei Beleg ${document_number}.\nKosten: $$5"],
    "letters.signature": ["Müller GmbH\nBuchhaltung"],
    "letters.attachment_name": ["${filename}", "Mahnung_${document_number}.pdf"],
    "letters.max_recipients": ["1", "10", "100"],
    **{
        f"{section}.{name}": ["${document_number} für ${customer_name}"]
        for section in ["payment_advice"] + [f"dunning_{level}" for level in range(1, 10)]
        for name in ("subject", "body")
    },
}

BAD_VALUES = [
    ("connection", "mapi"),
    ("auth.method", "kerberos"),
    ("oauth.provider", "yahoo"),
    ("smtp.port", "0"),
    ("smtp.port", "65536"),
    ("smtp.port", "abc"),
    ("smtp.security", "TLS"),
    ("smtp.security", "starttls"),
    ("smtp.timeout", "0"),
    ("smtp.timeout", "soon"),
    ("smtp.allow_plain_auth", "maybe"),
    ("smtp.host", "mail server.example.com"),
    ("sendmail.path", "/usr/sbin/sendmail\n-t"),
    ("smtp.ca_file", "/nonexistent/ca.pem"),
    ("oauth.ca_file", "/nonexistent/ca.pem"),
    ("oauth.authority_url", "http://login.example.com"),
    ("oauth.google_token_url", ""),
    ("oauth.proxy", "proxy.example.com:3128"),
    ("sender.address", "not-an-address"),
    ("sender.reply_to", "a@b"),
    ("sender.bcc", "x@example.com\r\nBcc: victim@example.com"),
    ("sender.name", "Evil\nBcc: victim@example.com"),
    ("sender.name", "Müller\u2028GmbH"),  # a line separator send could not write
    ("sender.address", "jörg@mueller.example"),  # non-ASCII before the @
    ("sender.address", ".buchhaltung@mueller.example"),
    ("sender.reply_to", "opos.@mueller.example"),
    ("sender.bcc", "archiv..kopie@mueller.example"),
    ("sender.address", "a" * 65 + "@mueller.example"),
    ("sender.address", "buchhaltung@☃.example"),  # not encodable in IDNA 2008
    ("nosuch.key", "1"),
    ("smtp.max_message_mb", "0"),
    ("smtp.connections", "0"),
    ("smtp.max_per_minute", "-1"),
    ("retry.give_up_days", "0"),
    ("letters.language", "fr"),
    ("queue.url", "/srv/share/queue.db"),  # only PostgreSQL; SQLite is the file in the home
    ("queue.url", "postgresql://opos:geheim@db.example.test/opos"),  # a password never goes into config.toml
    ("queue.url", "postgresql://opos@db.example.test/opos?password=geheim"),
    ("letters.subject", "Mahnung\nBcc: victim@example.com"),
    ("letters.body", "Kosten: $5"),
    ("letters.max_recipients", "0"),
    ("letters.max_recipients", "101"),
    ("payment_advice.subject", "Avis ${document_number"),
    ("dunning_3.body", "${ kunde }"),
    ("letters.subject", "Beleg ${customr_name}"),
    ("letters.attachment_name", "${filenam}"),
    ("payment_advice.body", "Avis, Stufe ${level}"),
    ("dunning_10.subject", "x"),
]


def test_every_key_is_covered() -> None:
    assert set(GOOD_VALUES) | {"smtp.ca_file", "oauth.ca_file"} == set(settings.KEYS)


@pytest.mark.parametrize(("key", "value"), [(k, v) for k, vs in GOOD_VALUES.items() for v in vs])
def test_every_key_round_trips(cli: Cli, home: Home, key: str, value: str) -> None:
    if key == "auth.method" and value.startswith("oauth"):
        assert cli("config", "set", "connection", "smtp").code == 0
    result = cli("config", "set", key, value)
    assert result.code == 0, result.err
    shown = json.loads(cli("config", "show", "--json").out)
    section, _, name = key.rpartition(".")
    shown_value = shown[section][name] if section else shown[name]
    assert settings.format_value(shown_value) == value
    assert shown[key] == shown_value  # also under the dotted name config set takes
    saved = tomllib.loads(home.config_file.read_text("utf-8"))
    assert settings.format_value(saved[section][name] if section else saved[name]) == value
    assert cli("config", "get", key).out.strip() == value


def test_ca_file_round_trips(cli: Cli, home: Home, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert cli("config", "set", "smtp.ca_file", str(ca)).code == 0
    assert json.loads(cli("config", "show", "--json").out)["smtp"]["ca_file"] == str(ca)


@pytest.mark.parametrize(("key", "value"), BAD_VALUES)
def test_bad_value_is_refused_and_file_untouched(cli: Cli, home: Home, key: str, value: str) -> None:
    assert cli("config", "set", "smtp.host", "mail.example.com").code == 0
    before = file_bytes(home.config_file)
    result = cli("config", "set", key, value)
    assert result.code == 2
    assert result.out == ""
    assert key in result.err
    assert "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert file_bytes(home.config_file) == before


def test_bad_value_names_what_is_allowed(cli: Cli, home: Home) -> None:
    err = cli("config", "set", "smtp.security", "TLS").err
    for mode in ("None", "Auto", "SslOnConnect", "StartTls", "StartTlsWhenAvailable"):
        assert mode in err
    assert "1 to 65535" in cli("config", "set", "smtp.port", "99999").err


def test_a_template_names_its_bad_placeholder(cli: Cli, home: Home) -> None:
    err = cli("config", "set", "dunning_2.subject", "Mahnung ${customr_name}").err
    assert "unknown placeholder ${customr_name}" in err and "${customer_name}" in err
    assert "bad placeholder at '${ kunde }'" in cli("config", "set", "dunning_3.body", "${ kunde } zahlt").err
    assert "'$5'" in cli("config", "set", "letters.body", "Kosten: $5").err
    assert cli("config", "set", "dunning_2.body", "Stufe ${level}").code == 0  # dunning letters have a level


def test_an_older_template_with_an_unknown_placeholder_still_loads(cli: Cli, home: Home) -> None:
    # Checked when set, not on load: nobody is locked out of a configuration written before the check.
    home.ensure()
    home.config_file.write_text('[dunning_5]\nsubject = "Mahnung ${kunde}"\n', "utf-8")
    assert cli("config", "get", "dunning_5.subject").out.strip() == "Mahnung ${kunde}"
    assert cli("config", "set", "dunning_5.subject", "Mahnung ${customer_name}").code == 0


def test_oauth_only_with_smtp(cli: Cli, home: Home) -> None:
    assert cli("config", "set", "connection", "outlook").code == 0
    result = cli("config", "set", "auth.method", "oauth")
    assert result.code == 2
    assert "smtp" in result.err
    assert cli("config", "set", "auth.method", "password").code == 0
    assert cli("config", "set", "connection", "windows").code == 2
    assert cli("config", "set", "connection", "sendmail").code == 2  # the local mail program has no login
    assert json.loads(cli("config", "show", "--json").out)["connection"] == "outlook"


def test_read_only_and_secret_keys_cannot_be_set(cli: Cli, home: Home) -> None:
    for key in ("oauth.client_secret_set", "auth.password", "oauth.client_secret"):
        result = cli("config", "set", key, "x")
        assert result.code == 2
        assert "--stdin" in result.err
    assert not home.config_file.exists()


def test_defaults_without_a_config_file(cli: Cli, home: Home) -> None:
    shown = json.loads(cli("config", "show", "--json").out)
    assert shown["connection"] == "smtp"
    assert shown["smtp"]["port"] == 587
    assert shown["smtp"]["security"] == "StartTls"
    assert shown["smtp"]["timeout"] == 30
    assert shown["oauth"]["provider"] == "microsoft"
    assert shown["auth"]["password_set"] is False
    assert shown["oauth"]["client_secret_set"] is False
    assert not home.config_file.exists()


def test_a_config_toml_reads_alike_the_first_time_and_after(home: Home) -> None:
    """The first read of a config.toml checks it and notes so in config.checked; later reads of the same file
    make it into settings without the checks. Both must give the very same settings, down to each value's
    type; a file whose values the checks change is therefore checked on every read."""
    from opos_tui.services.config_file import checked

    chosen = settings.check(
        {
            "auth": {"method": "oauth", "profile": "buchhaltung@mueller.example"},
            "oauth": {"provider": "google", "client_id": "abc.apps.googleusercontent.com"},
            "smtp": {"host": "mail.mueller.example", "port": 465, "security": "SslOnConnect", "connections": 4},
            "sender": {"address": "buchhaltung@mueller.example", "name": "Müller GmbH – Buchhaltung"},
            "letters": {"language": "en", "signature": "Müller GmbH\n${customer_number}"},
            "dunning_3": {"subject": "Letzte Mahnung ${document_number}", "body": "Zahlen Sie, ${customer_name}."},
        }
    )
    settings.save(home, chosen)
    assert not checked(home.config_file, home.config_checked)
    first = settings.load(home)
    assert checked(home.config_file, home.config_checked)
    again = settings.load(home)
    assert repr(first) == repr(again) == repr(chosen)
    home.config_file.write_bytes(home.config_file.read_bytes().replace(b"\n", b"\r\n"))  # as Notepad saves it
    assert not checked(home.config_file, home.config_checked)
    assert repr(settings.load(home)) == repr(chosen)
    assert checked(home.config_file, home.config_checked)

    for text, port in (("[smtp]\nport = true\n", 1), ('[smtp]\nport = 2525\nhost = " mail.example "\n', 2525)):
        home.config_file.write_text(text)
        for _ in range(2):
            read = settings.load(home)
            assert (type(read.smtp.port), read.smtp.port) == (int, port)
            assert read.smtp.host in ("", "mail.example")
            assert not checked(home.config_file, home.config_checked)


def test_config_file_is_private(cli: Cli, home: Home) -> None:
    cli("config", "set", "smtp.port", "2525")
    assert mode_of(home.config_file) == 0o600
    assert not list(home.root.glob("*.tmp"))


def test_secrets_never_reach_config_or_output(cli: Cli, home: Home) -> None:
    password = "S3cr3t-Passw0rt!"
    client_secret = "GOCSPX-client-secret-value"
    cli("config", "set", "auth.method", "password")
    result = cli("config", "set-password", "--stdin", stdin=password + "\n")
    assert result.code == 0
    assert cli("config", "set-secret", "oauth.client_secret", "--stdin", stdin=client_secret + "\n").code == 0
    human = cli("config", "show")
    machine = cli("config", "show", "--json")
    for text in (human.out, human.err, machine.out, result.out, home.config_file.read_text("utf-8")):
        assert password not in text
        assert client_secret not in text
    shown = json.loads(machine.out)
    assert shown["auth"]["password_set"] is True
    assert shown["oauth"]["client_secret_set"] is True
    assert shown["auth.password_set"] is True and shown["oauth.client_secret_set"] is True
    assert shown["secret_store"]["kind"] == "file"
    assert "auth.password_set = set" in human.out
    assert "plain text" in human.out  # the file store is named plainly as such
    assert mode_of(home.secrets_file) == 0o600


def test_empty_password_changes_nothing(cli: Cli, home: Home) -> None:
    cli("config", "set-password", "--stdin", stdin="first\n")
    result = cli("config", "set-password", "--stdin", stdin="\n")
    assert result.code == 2
    assert json.loads(cli("config", "show", "--json").out)["auth"]["password_set"] is True
    assert cli("config", "delete-secret", "auth.password").code == 0
    assert json.loads(cli("config", "show", "--json").out)["auth"]["password_set"] is False


def test_broken_config_file_is_reported_plainly(cli: Cli, home: Home) -> None:
    home.ensure()
    home.config_file.write_text("[smtp]\nport = 'many'\n")
    result = cli("config", "show")
    assert result.code == 2
    assert "smtp.port" in result.err
    assert "Traceback" not in result.err
    home.config_file.write_text("[smtp\n")
    result = cli("config", "set", "smtp.port", "25")
    assert result.code == 2
    assert "TOML" in result.err
    assert home.config_file.read_text() == "[smtp\n"


def test_german_messages(cli: Cli, home: Home) -> None:
    result = cli("--lang", "de", "config", "set", "smtp.port", "0")
    assert result.code == 2
    assert "ungültiger Wert für smtp.port" in result.err


def test_home_option_beats_environment(cli: Cli, home: Home, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert cli("config", "set", "smtp.port", "2525", "--home", str(other)).code == 0
    assert (other / "config.toml").exists()
    assert not home.config_file.exists()


def test_real_process_help_and_usage_errors(tmp_path: Path) -> None:
    env = {"OPOS_TUI_HOME": str(tmp_path), "OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([sys.executable, "-m", "opos_tui", "--help"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0
    assert "config" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "opos_tui", "config", "frobnicate"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize("columns", ["52", "100"])
def test_help_is_laid_out_for_the_terminals_width(
    columns: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from opos_tui.cli import main

    monkeypatch.setenv("COLUMNS", columns)
    with pytest.raises(SystemExit):
        main(["enqueue", "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert "--batch" in "\n".join(lines)
    assert int(columns) - 12 <= max(len(line) for line in lines) <= int(columns)


# What `opos-tui --help` must not pay for: the TUI, the settings model, the event loop, the mail package, the
# queue's database, the SMTP client, the PDF reader, the OAuth libraries. Each command imports these when it runs.
HEAVY = (
    "textual",
    "pydantic",
    "opos_tui.services.settings",
    "asyncio",
    "email",
    "sqlite3",
    "aiosmtplib",
    "pypdf",
    "msal",
    "google",
    "opos_tui.services.queue",
)


@pytest.mark.parametrize("argv", [["--help"], ["config", "--help"], ["send", "--help"], ["enqueue", "--help"]])
def test_help_imports_none_of_the_heavy_modules(tmp_path: Path, argv: list[str]) -> None:
    env = {"OPOS_TUI_HOME": str(tmp_path), "OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin"}
    probe = (
        "import sys\n"
        "from opos_tui.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"sys.stderr.write(repr(sorted(m for m in sys.modules if m.partition('.')[0] in {HEAVY!r} or m in {HEAVY!r})))"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert "usage: opos-tui" in shown.stdout
    assert shown.stderr == "[]"


ARGV_SAMPLES = [
    ["send"],
    ["--home", "enqueue", "send", "--json"],
    ["--ho", "enqueue", "send"],
    ["--home=send", "queue", "--status", "held"],
    ["--lang", "de", "enqueue", "--type", "dunning", "--to", "a@example.test", "--attach", "a.pdf"],
    ["config", "set", "smtp.port", "2525"],
    ["oauth", "status", "--json"],
    ["hold", "1", "2"],
    ["mark-sent", "7"],
    ["--home", "/tmp/x"],
    [],
]


@pytest.mark.parametrize("argv", ARGV_SAMPLES)
def test_a_command_line_parses_alike_with_only_its_commands_parser(argv: list[str]) -> None:
    """Only the named command's parser is built for a run (none for the TUI); what is parsed is what the whole
    parser makes of the same words, also where --home's value is a command's name."""
    from opos_tui.cli import build_parser

    alone = build_parser(argv)
    commands = next(a for a in alone._actions if isinstance(a, argparse._SubParsersAction))
    assert len(commands.choices) == (1 if argv and argv != ["--home", "/tmp/x"] else 0)
    parsed, whole = vars(alone.parse_args(argv)), vars(build_parser().parse_args(argv))
    assert parsed.keys() == whole.keys()
    assert {k: v for k, v in parsed.items() if k != "handler"} == {k: v for k, v in whole.items() if k != "handler"}
    assert getattr(parsed["handler"], "__name__", "") == getattr(whole["handler"], "__name__", "")


@pytest.mark.parametrize("argv", [["--help"], ["--hel"], ["-h"], ["sendd"], ["--home", "x", "--", "send"]])
def test_help_and_unknown_commands_get_the_whole_parser(argv: list[str]) -> None:
    from opos_tui.cli import COMMANDS, build_parser

    commands = next(a for a in build_parser(argv)._actions if isinstance(a, argparse._SubParsersAction))
    assert list(commands.choices) == list(COMMANDS)


RUN_PROBE = """
import atexit, gc, sys, threading, weakref
from opos_tui import cli

class Cycle:
    pass

def main():
    print("start", gc.isenabled(), gc.get_freeze_count() > 0)
    for waiting in [t for t in threading.enumerate() if isinstance(t, threading.Timer)]:
        waiting.join()  # a command that runs longer than the start: the TUI, a send run
    print("later", gc.isenabled(), gc.get_freeze_count() > 0)
    made = Cycle()
    made.me = made
    gone = weakref.ref(made)
    del made
    gc.collect()
    print("garbage made later is collected", gone() is None)
    return 3

cli.main = main
atexit.register(lambda: print("frozen at exit", gc.get_freeze_count() > 0))
cli.run()
"""


def test_the_program_collects_no_garbage_while_it_starts_and_as_usual_after() -> None:
    """``opos-tui`` (cli.run) keeps the garbage collector off while it starts (its imports free next to
    nothing), on again for whatever runs longer, for what it makes from then on (the start's objects frozen
    out of it), and frozen at the exit; the exit code is main's."""
    ran = subprocess.run([sys.executable, "-c", RUN_PROBE], capture_output=True, text=True, timeout=60)
    assert ran.returncode == 3, ran.stderr
    assert ran.stdout.splitlines() == [
        "start False False",
        "later True True",
        "garbage made later is collected True",
        "frozen at exit True",
    ]


def test_config_set_help_lists_every_key_when_asked(cli: Cli) -> None:
    shown = cli("config", "set", "--help")
    assert shown.code == 0
    assert "keys: " + ", ".join(settings.KEYS) in " ".join(shown.out.split())


def test_the_parsers_static_lists_match_the_services() -> None:
    from opos_tui.cli import SECRET_NAMES, STATUSES
    from opos_tui.services import secrets
    from opos_tui.services.queue import Status

    assert SECRET_NAMES == secrets.SECRET_NAMES
    assert tuple(s.value for s in Status) == STATUSES


def test_parallel_config_set_keeps_every_value(home: Home) -> None:
    """Twelve admins (or scripts) run `config set` at once on different keys: every value reported saved
    is in config.toml afterwards."""
    values = {
        "smtp.host": "mail.example.com",
        "smtp.port": "2525",
        "smtp.timeout": "45",
        "smtp.max_message_mb": "20",
        "smtp.connections": "3",
        "smtp.max_per_minute": "30",
        "sender.address": "opos@example.com",
        "sender.name": "Buchhaltung",
        "sender.reply_to": "antwort@example.com",
        "sender.bcc": "archiv@example.com",
        "retry.backoff_minutes": "7",
        "retry.give_up_days": "3",
    }
    env = {"OPOS_TUI_HOME": str(home.root), "OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin"}
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "opos_tui", "config", "set", key, value],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for key, value in values.items()
    ]
    for process in runs:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "saved" in out
    saved = settings.load(home)
    assert {key: settings.format_value(settings.get_value(saved, key)) for key in values} == values
    assert mode_of(home.root / "config.toml.lock") == 0o600


def modules_after_idle_send(home: Home, prefixes: tuple[str, ...], secrets: str | None = None) -> list[str]:
    """The modules starting with one of ``prefixes`` that `opos-tui send --json` with nothing due imported."""
    report = f"repr(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    out, err = in_a_process(home, ["send", "--json"], report, secrets=secrets)
    assert json.loads(out)["left"] == 0
    return list(ast.literal_eval(err))


def test_send_with_nothing_due_imports_no_sign_in_and_no_mail_client(home: Home) -> None:
    """`opos-tui send` (cron, every minute) with nothing due and no OAuth: neither the sign-in package with its
    HTTP client nor the SMTP client nor the PDF reader is imported."""
    heavy = ("opos_tui.services.signin", "requests", "aiosmtplib", "pypdf")
    assert modules_after_idle_send(home, heavy, secrets="file") == []


def test_send_with_nothing_due_leaves_the_system_keyring_alone(home: Home) -> None:
    """`opos-tui send` with nothing due and the default secret store (keyring if there is one): finding the
    keyring's backend costs more than the whole run, so it is not even imported."""
    assert modules_after_idle_send(home, ("keyring",)) == []


def test_an_installation_named_by_its_home_starts_without_platformdirs(home: Home) -> None:
    """The platform's data folder is looked up only when neither --home nor OPOS_TUI_HOME names one."""
    probe = (
        "import sys\n"
        "from opos_tui.cli import main\n"
        "main(sys.argv[1:])\n"
        "sys.stderr.write(repr('platformdirs' in sys.modules))"
    )
    env = {"OPOS_TUI_SECRETS": "file", "PATH": "/usr/bin:/bin", "HOME": str(home.root.parent)}
    for argv, looked_up in ((["--home", str(home.root), "queue"], False), (["queue"], True)):
        listed = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, env=env)
        assert listed.returncode == 0, listed.stderr
        assert listed.stderr == repr(looked_up)


def test_a_refused_queue_url_never_repeats_its_password(cli: Cli, home: Home) -> None:
    for url in (
        "postgresql://opos:Geheim-4711@db.example/opos",
        "postgresql:///opos?host=/run/pg&password=Geheim-4711",
    ):
        result = cli("config", "set", "queue.url", url)
        assert result.code == 2
        assert "queue.url" in result.err and "***" in result.err
        assert "Geheim-4711" not in result.err + result.out
