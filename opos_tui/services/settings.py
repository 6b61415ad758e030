"""Every setting of the original E-Mail dialog, as one model of plain dataclasses, and its file ``config.toml``.

The model *is* the documentation: each field's docstring says what it does, and the command line's messages
say what each key takes (:func:`allowed_values`). Each field's annotation also says how a value is checked;
pydantic does the checking, and is imported only when something has to be checked (:func:`check`): a
config.toml that was accepted as it is now (``config.checked``) is read back without it, since importing
pydantic alone costs eight times a bare Python's start.
Keys are dotted paths (``smtp.port``); they are the contract of ``config set``. Secrets (the password, the
Google client secret, tokens) are not here: they live in the secret store.

In the layers (docs/ARCHITECTURE.md) the settings sit just above the domain modules (errors, addresses,
files, home, i18n), which they use; they import nothing else of opos_tui.
"""

# No `from __future__ import annotations` here: the fields' annotations are read as objects (KEYS, from_data).

import contextlib
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, get_args, get_origin

import tomli_w

from opos_tui.i18n import Lang, tr
from opos_tui.services.addresses import check_addr_spec, check_one_line
from opos_tui.services.config_file import parse, remember_checked, was_checked
from opos_tui.services.errors import Bilingual, ConfigError, InvalidValue, OposError
from opos_tui.services.files import hold_lock, write_atomic
from opos_tui.services.home import Home
from opos_tui.services.setting_choices import (
    AUTH_METHODS_FOR,
    OAUTH_METHODS,
    AuthMethod,
    Connection,
    OAuthProvider,
)

# The choices are the settings' own, kept plain so that a form shows them before the model is built; these two
# are also taken from here.
from opos_tui.services.setting_choices import SecurityMode as SecurityMode
from opos_tui.services.setting_choices import format_value as format_value

if TYPE_CHECKING:
    from pydantic import GetCoreSchemaHandler, TypeAdapter, ValidationError, ValidationInfo
    from pydantic_core import CoreSchema


@dataclass(frozen=True)
class _Then:
    """In a field's annotation: a check made after the value has its type, ``check(value)``, or with ``info``
    ``check(value, info)`` (the validation's context: some checks are made only when an admin sets a value)."""

    check: Callable[..., Any]
    info: bool = False

    def __get_pydantic_core_schema__(self, source: Any, handler: "GetCoreSchemaHandler") -> "CoreSchema":
        from pydantic_core import core_schema

        if self.info:
            return core_schema.with_info_after_validator_function(self.check, handler(source))
        return core_schema.no_info_after_validator_function(self.check, handler(source))


@dataclass(frozen=True)
class _Range:
    """In a whole number's annotation: its bounds (also named by :func:`allowed_values`)."""

    low: int
    high: int

    def __get_pydantic_core_schema__(self, source: Any, handler: "GetCoreSchemaHandler") -> "CoreSchema":
        from pydantic_core import core_schema

        return core_schema.int_schema(ge=self.low, le=self.high)


def _single_line(value: str) -> str:
    # AddressError is bilingual and a ValueError: field_errors finds it again in either language.
    return check_one_line(value).strip()


def _optional_address(value: str) -> str:
    value = _single_line(value)
    return check_addr_spec(value) if value else value


def _host(value: str) -> str:
    value = _single_line(value)
    if value and (any(c.isspace() for c in value) or "/" in value or len(value) > 253):
        raise InvalidValue(
            f"'{value}' is not a host name or IP address", f"'{value}' ist kein Hostname und keine IP-Adresse"
        )
    return value


def _readable_file(value: str, info: "ValidationInfo") -> str:
    # Checked when an admin sets it, not on every load: a moved file must not lock them out of the config.
    if value and info.context and info.context.get("check_files"):
        path = Path(value).expanduser()
        if not path.is_file():
            raise InvalidValue(f"file not found: {value}", f"Datei nicht gefunden: {value}")
        try:
            path.read_bytes()
        except OSError as exc:
            raise InvalidValue(
                f"cannot read {value}: {exc.strerror}", f"{value} nicht lesbar: {exc.strerror}"
            ) from None
    return value


def _https_url(value: str) -> str:
    value = _single_line(value).rstrip("/")
    if not value.startswith("https://") or len(value) <= len("https://") or any(c.isspace() for c in value):
        raise InvalidValue(f"'{value}' is not an https:// address", f"'{value}' ist keine https://-Adresse")
    return value


def _proxy_url(value: str) -> str:
    value = _single_line(value)
    if value and (not value.startswith(("http://", "https://")) or any(c.isspace() for c in value)):
        raise InvalidValue(
            f"'{value}' is not a proxy address such as http://proxy.example.com:3128",
            f"'{value}' ist keine Proxy-Adresse wie http://proxy.example.com:3128",
        )
    return value


Text = Annotated[str, _Then(_single_line)]
HttpsUrl = Annotated[str, _Then(_https_url)]
OptionalAddress = Annotated[str, _Then(_optional_address)]
ReadableFile = Annotated[str, _Then(_single_line), _Then(_readable_file, info=True)]


class _Section:
    """A section of the settings: each is a dataclass of its own, not frozen only because a frozen one costs twice
    as much to make at every start. Nothing changes one in place: changed settings are new ones (made and
    checked by :func:`with_value`)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}  # an unknown key is an error

    def data(self) -> dict[str, Any]:
        """As plain data, the way config.toml and ``--json`` hold it: sections as tables, choices as text."""
        data: dict[str, Any] = {}
        for name in _field_types(type(self)):
            value = getattr(self, name)
            if isinstance(value, _Section):
                value = value.data()
            data[name] = str(value) if isinstance(value, StrEnum) else value
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        """Made from plain data as it is, *without checking it*: only for data that :func:`check` accepted and
        read back equal (:func:`load`). TypeError, ValueError, KeyError or AttributeError if it does not even have
        the shape."""
        values: dict[str, Any] = {}
        types = _field_types(cls)
        for name, value in data.items():
            kind = types[name]
            if isinstance(kind, type) and issubclass(kind, _Section):
                value = kind.from_data(value)
            elif isinstance(kind, type) and issubclass(kind, StrEnum):
                value = kind(value)
            values[name] = value
        return cls(**values)


def _field_types(section: type[_Section]) -> dict[str, Any]:
    return {f.name: f.type for f in dataclasses.fields(section)}


@dataclass
class AuthSettings(_Section):
    """``[auth]``: how mails log in to the server (Anmelden)."""

    method: AuthMethod = "none"
    """How to log in: `none` (Anmelden off), `password` (Anmelden with Profil/Passwort), `oauth` (OAuth 2.0
    without a sign-in dialog), `oauth-dialog` (OAuth with a sign-in dialog if needed). OAuth only with SMTP."""
    profile: Text = ""
    """Profil: the user name for SMTP, or the profile name for Outlook. The password is kept in the secret
    store, never here."""


@dataclass
class OAuthSettings(_Section):
    """``[oauth]``: the OAuth 2.0 sign-in with Microsoft or Google, for ``auth.method`` ``oauth``."""

    provider: OAuthProvider = "microsoft"
    """Authorization server: `microsoft` (Office 365 / Exchange Online) or `google` (Gmail, Workspace)."""
    client_id: Text = ""
    """Application (client) ID of your own app registration (Microsoft: public client flows on, SMTP.Send;
    Google: a desktop client); empty = not set up yet, sign-in says what to register."""
    tenant_id: Text = ""
    """Directory (tenant) ID, Microsoft only; empty = `organizations` (any work or school account)."""
    authority_url: HttpsUrl = "https://login.microsoftonline.com"
    """Microsoft sign-in address without the tenant; national clouds use their own (e.g.
    https://login.microsoftonline.us)."""
    google_auth_url: HttpsUrl = "https://accounts.google.com/o/oauth2/auth"
    """Google's authorization address (the page the browser opens)."""
    google_token_url: HttpsUrl = "https://oauth2.googleapis.com/token"
    """Google's token address."""
    ca_file: ReadableFile = ""
    """Extra CA (PEM) trusted for the sign-in addresses besides the system's store, for a TLS-inspecting proxy;
    empty = the system's store only. No environment variable changes this trust."""
    proxy: Annotated[str, _Then(_proxy_url)] = ""
    """HTTP proxy for the sign-in addresses (http://host:port); empty = HTTPS_PROXY and NO_PROXY from the
    environment, or none."""


@dataclass
class SmtpSettings(_Section):
    """``[smtp]``: the SMTP server and how mails go out over it."""

    host: Annotated[str, _Then(_host)] = ""
    """SMTP server host name or IP address."""
    port: Annotated[int, _Range(1, 65535)] = 587
    """SMTP server port: 587 for submission with STARTTLS, 465 for SSL on connect, 25 for relays."""
    security: SecurityMode = SecurityMode.START_TLS
    """Sicherheit: `None`, `Auto`, `SslOnConnect`, `StartTls` or `StartTlsWhenAvailable` (MailKit's names)."""
    timeout: Annotated[int, _Range(1, 3600)] = 30
    """Seconds to wait for the server before giving up."""
    ca_file: ReadableFile = ""
    """Extra CA bundle (PEM) to trust, for internal mail servers; empty = the system's trust store only."""
    allow_plain_auth: bool = False
    """Allow sending the password over an unencrypted connection. Only for trusted internal relays."""
    max_message_mb: Annotated[int, _Range(1, 1000)] = 25
    """Largest total of attachments per mail, in MB; bigger mails are refused when they are queued."""
    connections: Annotated[int, _Range(1, 20)] = 1
    """Parallel connections while sending. Exchange Online allows 3 per mailbox."""
    max_per_minute: Annotated[int, _Range(0, 100_000)] = 0
    """Most mails sent per minute, over all connections; 0 = unlimited. Exchange Online allows 30."""


@dataclass
class SendmailSettings(_Section):
    """``[sendmail]``: the local mail program, for connection ``sendmail``."""

    path: Text = "/usr/sbin/sendmail"
    """The local mail program for connection `sendmail` (Unix): it gets each mail on its standard input, as
    `PATH -i -f SENDER -- RECIPIENTS`, never through a shell. Postfix, Exim and OpenSMTPD all install one here."""


@dataclass
class RetrySettings(_Section):
    """``[retry]``: when a mail that failed for the time being is tried again, and when it is given up."""

    backoff_minutes: Annotated[int, _Range(1, 1440)] = 5
    """Wait after the first temporary failure (4xx, connection lost) before trying a mail again; the wait
    doubles after each further failure (as Postfix does)."""
    max_backoff_minutes: Annotated[int, _Range(1, 1440)] = 60
    """The longest wait between two tries of one mail."""
    give_up_days: Annotated[int, _Range(1, 60)] = 5
    """Days after its first try that a mail that still fails temporarily is marked failed."""


def _queue_url(value: str) -> str:
    value = _single_line(value)
    if not value:
        return value
    if not value.startswith(("postgresql://", "postgres://")):
        raise InvalidValue(
            "must be empty (the SQLite file in the home) or a postgresql:// connection URI",
            "muss leer sein (die SQLite-Datei im Home-Ordner) oder eine postgresql://-Verbindungs-URI",
        )
    userinfo = value.split("://", 1)[1].split("/", 1)[0].rpartition("@")[0]
    if userinfo.partition(":")[2] or "password=" in value.lower():
        raise InvalidValue(
            "must not hold the password: store it with `opos-tui config set-secret queue.password --stdin`"
            " or in ~/.pgpass",
            "darf das Passwort nicht enthalten: es mit `opos-tui config set-secret queue.password --stdin`"
            " oder in ~/.pgpass speichern",
        )
    return value


def _shown(raw: str) -> str:
    """A typed value as an error message may repeat it: a password in a connection URI is masked (the
    message reaches the screen and the terminal's scroll-back)."""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1***@", re.sub(r"(?i)(password=)[^&\s]*", r"\1***", raw))


@dataclass
class QueueSettings(_Section):
    """``[queue]``: where the send queue is kept."""

    url: Annotated[str, _Then(_queue_url)] = ""
    """Where the queue is: empty = `queue.db` in the home (SQLite); a libpq connection URI = one queue on a
    PostgreSQL server for every host of a farm (`postgresql://opos@db.example:5432/opos`, or through a Unix
    socket `postgresql:///opos?host=/run/postgresql`; TLS as libpq takes it: `?sslmode=verify-full`). The
    password goes into the secret store (`config set-secret queue.password --stdin`) or `~/.pgpass`."""


def _template_line(value: str) -> str:
    return _template(_single_line(value))


def _template(value: str) -> str:
    # ${placeholder} with string.Template's rules; `$$` is a literal dollar sign. No code in templates.
    for match in Template.pattern.finditer(value):
        if match.group("invalid") is not None:
            rest = value[match.start() :].splitlines()[0]
            end = rest.find("}") + 1 if rest.startswith("${") else 0
            bad = rest[: end or len(rest.split(maxsplit=1)[0])][:30]
            raise InvalidValue(
                f"has a bad placeholder at '{bad}': write ${{name}}, and $$ for a dollar sign",
                f"hat einen fehlerhaften Platzhalter bei '{bad}': ${{name}} schreiben, und $$ für ein Dollarzeichen",
            )
    return value


TemplateLine = Annotated[str, _Then(_template_line)]
TemplateText = Annotated[str, _Then(_template)]

LETTER_VALUES: tuple[str, ...] = (
    "customer_name",
    "customer_number",
    "document_number",
    "amount",
    "currency",
    "due_date",
)
"""The values a mail brings for its templates (the manifest's ``vars``, ``enqueue --var``)."""
LEVEL_VALUE = "level"
"""Filled in for dunning letters: their level, 1 to 9."""
FILE_VALUES: tuple[str, ...] = ("filename", "stem", "ext")
"""Filled in for the attachment name only: each file's own name, the name without and its extension."""


def _known_placeholders(value: str, info: "ValidationInfo", known: tuple[str, ...]) -> str:
    """Refuse a placeholder no mail can fill (a typo such as ``${customr_name}``). Checked when an admin sets
    a template (``check_files`` context), not on every load: an older template must not lock anyone out."""
    if not (info.context and info.context.get("check_files")):
        return value
    unknown = [name for name in Template(value).get_identifiers() if name not in known]
    if unknown:
        names = ", ".join("${" + name + "}" for name in dict.fromkeys(unknown))
        allowed = ", ".join("${" + name + "}" for name in known)
        raise InvalidValue(
            f"unknown placeholder {names}; known: {allowed}", f"unbekannter Platzhalter {names}; bekannt: {allowed}"
        )
    return value


def _placeholders(*known: str) -> _Then:
    """In a template's annotation: the check that it uses no placeholder but these."""
    return _Then(functools.partial(_known_placeholders, known=known), info=True)


_LETTER_PLACEHOLDERS = _placeholders(*LETTER_VALUES, LEVEL_VALUE)


@dataclass
class LetterSettings(_Section):
    """The global settings for letter reports sent by e-mail (the original's first extra page)."""

    language: Literal["de", "en"] = "de"
    """Language of the shipped subject and body texts used where no own text is set: `de` or `en`."""
    subject: Annotated[TemplateLine, _LETTER_PLACEHOLDERS] = ""
    """Default subject for every report without its own; empty = the shipped text of each report. Placeholders
    such as ${customer_name} and ${document_number} are filled from each mail's values."""
    body: Annotated[TemplateText, _LETTER_PLACEHOLDERS] = ""
    """Default body for every report without its own; empty = the shipped text of each report."""
    signature: Annotated[TemplateText, _LETTER_PLACEHOLDERS] = ""
    """Signature appended below every body (after a `-- ` line); empty = none."""
    attachment_name: Annotated[TemplateLine, _placeholders(*LETTER_VALUES, LEVEL_VALUE, *FILE_VALUES)] = "${filename}"
    """File name of each attachment as the recipient sees it; ${filename} keeps the file's own name. Other
    placeholders: ${stem}, ${ext} and each mail's values, e.g. Mahnung_${document_number}.pdf."""
    max_recipients: Annotated[int, _Range(1, 100)] = 10
    """Most recipients (To and Cc together) of one mail: one letter goes to one customer. A mail with more is
    refused when it is queued."""


@dataclass
class ReportTemplate(_Section):
    """``[dunning_1]`` to ``[dunning_9]``: one dunning level's subject and body (a report of the original)."""

    subject: Annotated[TemplateLine, _LETTER_PLACEHOLDERS] = ""
    """Subject of this report's mails; empty = letters.subject, or the shipped text if that is empty too."""
    body: Annotated[TemplateText, _LETTER_PLACEHOLDERS] = ""
    """Body of this report's mails; empty = letters.body, or the shipped text if that is empty too."""


@dataclass
class PaymentAdviceTemplate(ReportTemplate):
    """``[payment_advice]``: the subject and body of payment advices, which have no ``${level}``."""

    subject: Annotated[TemplateLine, _placeholders(*LETTER_VALUES)] = ""
    body: Annotated[TemplateText, _placeholders(*LETTER_VALUES)] = ""


@dataclass
class SenderSettings(_Section):
    """``[sender]``: whom the mails are from."""

    address: OptionalAddress = ""
    """From address of the mails."""
    name: Text = ""
    """Display name shown with the From address."""
    reply_to: OptionalAddress = ""
    """Reply-To address; empty = replies go to the From address."""
    bcc: OptionalAddress = ""
    """Archive copy: every mail is also sent (blind) to this address; empty = none."""


@dataclass
class Settings(_Section):
    """All of config.toml: the connection type and every section.

    (Each dataclass here has a docstring: without one, making it at every start asks ``inspect`` for its
    signature to write one.)"""

    connection: Connection = "smtp"
    """Verbindungsart: `windows` (Windows-Standard, Simple MAPI), `outlook` (Extended MAPI), `smtp`, or on
    Unix `sendmail` (the local mail program, see sendmail.path)."""
    auth: AuthSettings = field(default_factory=AuthSettings)
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    sendmail: SendmailSettings = field(default_factory=SendmailSettings)
    sender: SenderSettings = field(default_factory=SenderSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    letters: LetterSettings = field(default_factory=LetterSettings)
    payment_advice: PaymentAdviceTemplate = field(default_factory=PaymentAdviceTemplate)
    """Zahlungsavis: subject and body of payment advices."""
    dunning_1: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 1: subject and body."""
    dunning_2: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 2."""
    dunning_3: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 3."""
    dunning_4: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 4."""
    dunning_5: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 5."""
    dunning_6: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 6."""
    dunning_7: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 7."""
    dunning_8: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 8."""
    dunning_9: ReportTemplate = field(default_factory=ReportTemplate)
    """Mahnung level 9."""

    def uses_oauth(self) -> bool:
        """Whether mails go out with an OAuth 2.0 sign-in: SMTP with an OAuth login method. Asked before the
        sign-in package (with its HTTP client) is imported: nothing else needs it."""
        return self.connection == "smtp" and self.auth.method in OAUTH_METHODS

    def report(self, section: str) -> ReportTemplate:
        """The template section of one report: ``payment_advice`` or ``dunning_1`` .. ``dunning_9``."""
        template = getattr(self, section)
        assert isinstance(template, ReportTemplate)
        return template

    def __post_init__(self) -> None:
        # The one check of the whole model (pydantic makes it after the fields'; so does every construction).
        allowed = AUTH_METHODS_FOR[self.connection]
        if self.auth.method not in allowed:
            where = [c for c, methods in AUTH_METHODS_FOR.items() if self.auth.method in methods]
            method, connection, allowed_here = self.auth.method, self.connection, ", ".join(allowed)
            raise InvalidValue(
                f"auth.method '{method}' needs connection {' or '.join(where)}, not '{connection}' (allowed with"
                f" '{connection}': {allowed_here})",
                f"auth.method '{method}' braucht connection {' oder '.join(where)}, nicht '{connection}' (mit"
                f" '{connection}' erlaubt: {allowed_here})",
            )


# Read-only keys shown by `config show` but set through the secret store.
SECRET_KEYS: dict[str, str] = {
    "auth.password": "auth.password_set",
    "oauth.client_secret": "oauth.client_secret_set",
    "queue.password": "queue.password_set",
}


@dataclass(frozen=True)
class Key:
    """What a settable key takes: its type (int, bool, str, SecurityMode or a Literal of the choices) and the
    checks of its annotation."""

    type: Any
    checks: tuple[Any, ...]


def _collect_keys(section: type[_Section], prefix: str = "") -> dict[str, Key]:
    keys: dict[str, Key] = {}
    for name, annotation in _field_types(section).items():
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            keys.update(_collect_keys(annotation, f"{prefix}{name}."))
        elif get_origin(annotation) is Annotated:
            keys[f"{prefix}{name}"] = Key(annotation.__origin__, annotation.__metadata__)
        else:
            keys[f"{prefix}{name}"] = Key(annotation, ())
    return keys


KEYS: dict[str, Key] = _collect_keys(Settings)
"""Every settable dotted key and what it takes."""


def allowed_values(key: str, lang: Lang | None = None) -> str:
    """What a key takes, worded for an error message or a help line: ``must be`` / ``muss ... sein`` + this."""
    annotation, checks = KEYS[key].type, KEYS[key].checks
    if annotation is SecurityMode:
        choices = ", ".join(m.value for m in SecurityMode)
        return tr(f"one of {choices}", f"eines von {choices}", lang)
    if getattr(annotation, "__origin__", None) is Literal:
        choices = ", ".join(str(a) for a in get_args(annotation))
        return tr(f"one of {choices}", f"eines von {choices}", lang)
    if annotation is bool:
        return tr("true or false", "true oder false", lang)
    if annotation is int:
        low, high = next((c.low, c.high) for c in checks if isinstance(c, _Range))
        return tr(f"a whole number from {low} to {high}", f"eine ganze Zahl von {low} bis {high}", lang)
    return tr("text on one line", "Text in einer Zeile", lang)


def _key_of(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)


def field_errors(exc: "ValidationError", lang: Lang | None = None) -> dict[str, str]:
    """A pydantic error (from :func:`check`) as {dotted key: message} in the current language (or ``lang``);
    errors of the whole model go under ``""``."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        key = _key_of(err["loc"])
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, Bilingual):  # InvalidValue, AddressError
            msg = cause.message(lang)
        elif err["type"] == "unexpected_keyword_argument":
            msg = tr("unknown key", "unbekannter Schlüssel", lang)
        elif key in KEYS:
            allowed = allowed_values(key, lang)
            msg = tr(f"must be {allowed}", f"muss {allowed} sein", lang)
        else:
            msg = err["msg"]
        errors.setdefault(key, msg)
    return errors


def _config_error(exc: "ValidationError", explain: Callable[[dict[str, str], Lang], str]) -> ConfigError:
    """A validation error as a ConfigError whose English and German texts are each made by ``explain``."""
    en: Lang = "en"
    de: Lang = "de"
    return ConfigError(explain(field_errors(exc, en), en), explain(field_errors(exc, de), de), detail=str(exc))


@functools.cache
def _adapter() -> "TypeAdapter[Settings]":
    from pydantic import TypeAdapter

    return TypeAdapter(Settings)


def ready_checks() -> None:
    """Import pydantic and build the model's checks now (about 0.1 s), in a worker thread, so that the first
    :func:`check` does not pay for it where it would hold something up (a form checks each change as it is
    typed)."""
    _adapter()


def check(data: Mapping[str, Any], check_files: bool = False) -> Settings:
    """Settings made from plain data (config.toml's, or a form's), every value checked; pydantic's
    ValidationError (:func:`field_errors`) if any does not fit. ``check_files``: also check what is only checked
    when an admin sets it (that files exist, that templates use known placeholders)."""
    return _adapter().validate_python(data, context={"check_files": check_files})


def validate(data: dict[str, Any], check_files: bool = False) -> Settings:
    """Validate a nested dict; ConfigError names the first bad key and what it takes."""
    from pydantic import ValidationError

    try:
        return check(data, check_files)
    except ValidationError as exc:

        def first(errors: dict[str, str], lang: Lang) -> str:
            key, msg = next(iter(errors.items()))
            return f"{key}: {msg}" if key else msg

        raise _config_error(exc, first) from None


def parse_key(key: str) -> str:
    if key in KEYS:
        return key
    if key in SECRET_KEYS or key in SECRET_KEYS.values():
        secret = next(s for s, shown in SECRET_KEYS.items() if key in (s, shown))
        how = "config set-password --stdin" if secret == "auth.password" else f"config set-secret {secret} --stdin"
        raise ConfigError(
            f"{key} is a secret and cannot be set here; use: opos-tui {how}",
            f"{key} ist geheim und wird so nicht gesetzt; verwenden Sie: opos-tui {how}",
        )
    known = ", ".join(KEYS)
    raise ConfigError(f"unknown key '{key}'; known keys: {known}", f"unbekannter Schlüssel '{key}'; bekannt: {known}")


def get_value(settings: Settings, key: str) -> Any:
    value: Any = settings
    for part in parse_key(key).split("."):
        value = getattr(value, part)
    return value.value if isinstance(value, StrEnum) else value


def with_value(settings: Settings, key: str, raw: str) -> Settings:
    """A new, validated Settings with ``key`` set from the text ``raw``; ConfigError if it does not fit."""
    from pydantic import ValidationError

    key = parse_key(key)
    data = settings.data()
    section, _, name = key.rpartition(".")
    target = data[section] if section else data
    target[name] = raw
    try:
        return check(data, check_files=True)
    except ValidationError as exc:

        def of_key(errors: dict[str, str], lang: Lang) -> str:
            msg = errors.get(key) or next(iter(errors.values()))
            shown = _shown(raw)
            return tr(
                f"invalid value for {key}: {shown!r}: {msg}", f"ungültiger Wert für {key}: {shown!r}: {msg}", lang
            )

        raise _config_error(exc, of_key) from None


def merge(base: Settings, mine: Settings, theirs: Settings) -> tuple[dict[str, Any], list[str]]:
    """Three-way merge for a form that edited ``base`` into ``mine`` while someone else saved ``theirs``.

    Keys only they changed take their value, keys only this side changed take ours: nobody's change is lost
    silently. Returns the merged data (to be validated: two fitting changes may not fit together) and the
    keys both sides changed to different values, where ours is kept.
    """
    merged = mine.data()
    both: list[str] = []
    for key in KEYS:
        old, ours, new = (get_value(s, key) for s in (base, mine, theirs))
        if new in (old, ours):
            continue
        if ours == old:
            section, _, name = key.rpartition(".")
            (merged[section] if section else merged)[name] = new
        else:
            both.append(key)
    return merged, both


def load(home: Home) -> Settings:
    """The saved settings, or the defaults when there is no config.toml yet.

    A file is checked (pydantic) unless ``config.checked`` notes that it was accepted as it is now. It is noted
    only when the file's data, made into Settings without the checks, equals what the checks made of it (no
    value they would have changed, such as a space around a host name): that is what the file is read as
    then.
    """
    path = home.config_file
    parsed = parse(path)
    if parsed is None:
        return Settings()
    text, data = parsed
    if was_checked(home.config_checked, text) and (known := _unchecked(data)):
        return known
    try:
        accepted = validate(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.en}", f"{path}: {exc.de}", detail=exc.detail) from None
    if repr(_unchecked(data)) == repr(accepted):  # repr: 1 and True, or a choice and its text, are not equal
        remember_checked(home.config_checked, text)
    return accepted


def _unchecked(data: dict[str, Any]) -> Settings | None:
    try:
        return Settings.from_data(data)
    except (TypeError, ValueError, KeyError, AttributeError):  # not even the shape: a config.checked made by hand
        return None


@dataclass(frozen=True)
class FileProblem:
    """One key of config.toml that cannot be used as it is."""

    key: str
    line: int | None
    """Where it is in the file, if it can be found."""
    message: str
    raw: str | None
    """The file's value as text, for a known key (to be corrected in a field); None for an unknown key."""


@dataclass(frozen=True)
class Salvaged:
    """What can be read of a config.toml that :func:`load` refuses, for the form that lets an admin fix it."""

    settings: Settings
    """The valid keys of the file; the defaults for everything else."""
    problems: tuple[FileProblem, ...] = ()
    unreadable: ConfigError | None = None
    """Why the file could not be read at all (not TOML, no permission); then ``settings`` are the defaults."""


def salvage(home: Home) -> Salvaged:
    """config.toml as far as it is valid: every invalid or unknown key is set aside as a :class:`FileProblem`."""
    try:
        parsed = parse(home.config_file)
    except ConfigError as exc:
        return Salvaged(Settings(), unreadable=exc)
    if parsed is None:
        return Salvaged(Settings())
    text, data = parsed
    problems: list[FileProblem] = []
    from pydantic import ValidationError

    while True:
        try:
            return Salvaged(check(data), tuple(problems))
        except ValidationError as exc:
            errors = field_errors(exc)
        for key, message in errors.items():
            # An error of the whole model is a combination that does not fit: auth.method for the connection.
            key = key or "auth.method"
            found, value = _pop(data, key)
            if not found:
                return Salvaged(Settings(), (*problems, FileProblem(key, None, message, None)))
            raw = format_value(value) if key in KEYS else None
            problems.append(FileProblem(key, _line_of(text, key), message, raw))


def _pop(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    *sections, name = key.split(".")
    target: Any = data
    for section in sections:
        target = target.get(section) if isinstance(target, dict) else None
    if not isinstance(target, dict) or name not in target:
        return False, None
    return True, target.pop(name)


def _line_of(text: str, key: str) -> int | None:
    """The line that sets ``key`` in a TOML text (``[section]`` then ``name = …``, or ``section.name = …``)."""
    section, _, name = key.rpartition(".")
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            table = stripped.strip("[] \t")
            continue
        left, equals, _ = stripped.partition("=")
        written = ".".join(part.strip().strip("\"'") for part in left.split("."))
        if equals and (table, written) in ((section, name), ("", key)):
            return number
    return None


def lock_file(home: Home) -> Path:
    return home.config_file.with_name(home.config_file.name + ".lock")


@contextlib.contextmanager
def write_lock(home: Home) -> Iterator[None]:
    """Hold config.toml's lock (``config.toml.lock`` beside it, made like config.toml) for a whole
    read-modify-write.

    Every writer of config.toml (``config set``, the settings form) reads, changes and saves under it, so
    processes saving at once are serialised and none of them overwrites what another just saved. Not
    re-entrant: take it once per write.
    """
    path = lock_file(home)
    with contextlib.ExitStack() as stack:
        try:
            home.ensure()
            stack.enter_context(hold_lock(path))
        except OSError as exc:
            raise _cannot_write(path, exc) from None
        yield


def save(home: Home, settings: Settings) -> None:
    """Write config.toml atomically, owner-only (0600). A read-modify-write holds :func:`write_lock`."""
    data = settings.data()
    try:
        home.ensure()
        write_atomic(home.config_file, tomli_w.dumps(data).encode("utf-8"))
    except OSError as exc:
        raise _cannot_write(home.config_file, exc) from None


def _cannot_write(path: Path, exc: OSError) -> OposError:
    return OposError(
        f"cannot write {path}: {exc.strerror or exc} (check the permissions of its folder)",
        f"{path} nicht schreibbar: {exc.strerror or exc} (Rechte des Ordners prüfen)",
        str(exc),
    )


def set_value(home: Home, key: str, raw: str) -> Settings:
    """``config set``: validate against the saved settings, then save; on error the file is untouched."""
    with write_lock(home):
        settings = with_value(load(home), key, raw)
        save(home, settings)
    return settings


DEFAULTS_MODULE = Path(__file__).with_name("setting_defaults.py")
"""The defaults as plain data, generated from the model by :func:`defaults_source`: the settings form shows
config.toml over them before the model is imported (checking config.toml with pydantic costs as much as the rest
of the form's start)."""


def defaults_source() -> str:
    """The text of :data:`DEFAULTS_MODULE`: every key's default, as :class:`Settings` has it."""
    import pprint

    data = pprint.pformat(Settings().data(), indent=4, width=110, sort_dicts=False)
    return (
        '"""Every setting\'s default as plain data, generated from the settings model (services/settings.py):\n'
        "do not edit. After changing a default there, write it anew with\n"
        "``python -c 'from opos_tui.services import settings; settings.write_defaults()'`` and ``ruff format``\n"
        'it; a test fails until then."""\n\n'
        "from typing import Any\n\n"
        f"DEFAULTS: dict[str, Any] = {data}\n"
    )


def write_defaults() -> None:
    DEFAULTS_MODULE.write_text(defaults_source())
