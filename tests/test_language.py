"""German mode speaks German, English mode English: the settings form, the connection test, the letter report
pages and the messages behind them, each walked in both languages and searched for words of the other."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from opos_tui.i18n import LANGS, Lang, set_lang
from opos_tui.services import errors, secrets, settings
from opos_tui.services.addresses import AddressError, check_addr_spec, parse_mailbox
from opos_tui.services.home import Home
from opos_tui.services.transports.base import AddressNotSupported
from opos_tui.services.transports.smtp import errors as smtp
from tests.servers.smtp import free_port

# Short words that give a language away. Not "mit": the original dialog's "OAuth mit Dialog" is a name.
TELLTALE: dict[Lang, set[str]] = {
    "en": {"the", "must", "not", "is", "are", "and", "or", "with", "from", "cannot", "please", "only", "this"},
    "de": {"der", "die", "das", "nicht", "muss", "ist", "und", "oder", "bitte", "wird", "kein", "keine", "für"},
}


def foreign_words(text: str, lang: Lang) -> set[str]:
    """Words of the other language in ``text``."""
    other: Lang = "de" if lang == "en" else "en"
    text = re.sub(r"/\S*", " ", text)  # file paths (the test's own temporary folders) are no language
    return {word for word in re.findall(r"[A-Za-zÄÖÜäöüß]+", text) if word.lower() in TELLTALE[other]}


def test_telltale_words_find_the_other_language() -> None:
    assert foreign_words("Port muss eine ganze Zahl sein", "en") == {"muss"}
    assert foreign_words("must be a whole number", "de") == {"must"}
    assert not foreign_words("OAuth mit Dialog (sign-in dialog if needed)", "en")
    assert not foreign_words("Datei /tmp/test_the_form_and_more/secrets.toml", "de")


@pytest.mark.parametrize("lang", LANGS)
def test_the_settings_form_and_connection_test_speak_one_language(lang: Lang, tmp_path: Path) -> None:
    walk = subprocess.run(
        [sys.executable, "-m", "tests.language_walk", lang, str(tmp_path / "home"), str(free_port())],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
        env={"OPOS_TUI_SECRETS": "file", "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert walk.returncode == 0, walk.stderr
    pages = walk.stdout.split("\f")
    everything = walk.stdout
    # The walk did reach what it is meant to check: inline errors, the refused save, the failed test.
    expected = {
        "en": [
            "must be a whole number from 1 to 65535",
            "is not an e-mail address",
            "Not saved",
            "refused",
            "unknown placeholder ${customr_name}",
            "Letter reports: per report",
        ],
        "de": [
            "muss eine ganze Zahl von 1 bis 65535 sein",
            "ist keine E-Mail-Adresse",
            "Nicht gespeichert",
            "unbekannter Platzhalter ${customr_name}",
            "Brief-Reports: je Report",
        ],
    }[lang]
    for text in expected:
        assert text in everything
    for page in pages:
        found = {line.strip(): foreign_words(line, lang) for line in page.splitlines() if foreign_words(line, lang)}
        assert not found, f"{lang}: {found}"
    if lang == "de":
        assert "^p Befehle" in everything


def address_error(address: str) -> AddressError:
    with pytest.raises(AddressError) as caught:
        check_addr_spec(address)
    return caught.value


def sample_errors() -> list[errors.OposError]:
    reply = "5.7.8 Authentication credentials invalid"
    host, port = "mail.example.com", 587
    return [
        smtp.ServerUnreachable.because(host, port, "Network is unreachable", os_error=errno.ENETUNREACH),
        smtp.ConnectionRefused(host, port),
        smtp.ConnectionTimedOut(host, port, 30),
        smtp.ConnectionLost(host, port),
        smtp.ServerDeferred(451, "4.3.0 try again later", "rcpt"),
        smtp.MessageRejected(554, "5.6.0 rejected", "mail"),
        smtp.MessageRejected(554, "5.6.0 rejected", "data"),
        smtp.RecipientsRefused({"a@example.com": "550 5.1.1 unknown"}),
        smtp.MessageTooLarge(30_000_000, 25_000_000),
        AddressNotSupported("jürgen@example.de", address_error("jürgen@example.de")),
        smtp.ServerRefused(554, "5.7.1 go away", host),
        smtp.HostNotFound(host),
        smtp.NotSmtp(host, port),
        smtp.TlsMismatch(host, 465, True, "SslOnConnect"),
        smtp.TlsMismatch(host, 587, False, "StartTls"),
        smtp.StartTlsNotOffered(host, port),
        smtp.StartTlsRefused(454, "4.7.0 TLS unavailable", host),
        smtp.TlsFailed(host, port, "WRONG_VERSION_NUMBER"),
        smtp.CertificateNotTrusted(host, "CN=mail", "CN=mail", "self-signed certificate"),
        smtp.CertificateNotTrusted(host, "CN=mail", "CN=Corp CA", "unable to get local issuer certificate"),
        smtp.CertificateProblem(host, "CN=other", "CN=CA", "Hostname mismatch"),
        smtp.CaFileUnusable("/etc/ca.pem", "no PEM certificate in it"),
        smtp.PlainAuthRefused(host),
        smtp.AuthNotOffered(host, "PLAIN", [], encrypted=False),
        smtp.AuthNotOffered(host, "PLAIN", ["XOAUTH2"], encrypted=True),
        smtp.AuthenticationFailed(535, reply, "opos@example.com", "PLAIN"),
        smtp.AuthenticationFailed(535, reply, "opos@example.com", "XOAUTH2"),
        smtp.SmtpAuthDisabled(535, "5.7.139 Authentication unsuccessful", "opos@example.com", "LOGIN"),
        smtp.AuthenticationRequired(530, "5.7.0 Authentication required", host),
        smtp.ReplyLost(host),
    ]


def errors_classes() -> set[type]:
    found: set[type] = set()
    todo: list[type] = [errors.OposError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return {cls for cls in found if cls.__module__ == smtp.__name__ and "__init__" in vars(cls)} - {errors.OposError}


def test_every_error_of_the_sending_services_is_sampled() -> None:
    assert errors_classes() <= {type(error) for error in sample_errors()} | {smtp.ServerUnreachable}


def invalid_values() -> dict[str, str]:
    """One bad value for every key of the settings model."""
    bad = {key: "x" for key in settings.KEYS}
    bad.update({"smtp.host": "a b", "smtp.ca_file": "/nonexistent/ca.pem", "sender.name": "a\nb"})
    bad.update({key: "archiv@" for key in ("sender.address", "sender.reply_to", "sender.bcc")})
    bad.update({key: "${" for key in settings.KEYS if key.endswith((".subject", ".body", ".signature"))})
    bad["letters.attachment_name"] = "${"
    bad["auth.profile"] = bad["oauth.client_id"] = bad["oauth.tenant_id"] = bad["sendmail.path"] = "a\nb"
    return bad


def message_tables(home: Home) -> list[str]:
    texts = [error.message() for error in sample_errors()]
    for key, raw in invalid_values().items():
        with pytest.raises(errors.ConfigError) as caught:
            settings.with_value(settings.Settings(), key, raw)
        texts.append(str(caught.value))
        texts.append(f"{key}: {settings.allowed_values(key)}")
    oauth = settings.with_value(settings.Settings(), "auth.method", "oauth")
    with pytest.raises(errors.ConfigError) as caught:
        settings.with_value(oauth, "connection", "outlook")
    texts.append(str(caught.value))
    with pytest.raises(ValidationError) as invalid:
        settings.check({"smtp": {"port": "x", "colour": "red"}})
    texts.extend(settings.field_errors(invalid.value).values())
    for bad in ("archiv@", "a\nb@example.com"):
        with pytest.raises(AddressError) as caught_address:
            check_addr_spec(bad)
        texts.append(str(caught_address.value))
    with pytest.raises(AddressError) as caught_address:
        parse_mailbox("a@example.com, b@example.com")
    texts.append(str(caught_address.value))
    texts.append(secrets.FileSecretStore(home.secrets_file).describe())
    return texts


@pytest.mark.parametrize("lang", LANGS)
def test_the_message_tables_speak_one_language(lang: Lang, home: Home) -> None:
    set_lang(lang)
    found = {text: foreign_words(text, lang) for text in message_tables(home) if foreign_words(text, lang)}
    assert not found
