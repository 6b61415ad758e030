"""The secret store: passwords and tokens, never in config.toml, never printed or logged.

The system keyring where a real backend exists; on a headless server without one, a 0600 file in the home
folder (0660 in a home an admin shared with a group, see files.modes_in: its operators need the password to
send), which ``config show`` and the settings screen name plainly. ``OPOS_TUI_SECRETS=file`` forces the file
store (tests, cron), ``OPOS_TUI_SECRETS=keyring`` insists on the keyring.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, Protocol

import tomli_w

from opos_tui.i18n import tr
from opos_tui.services.errors import SecretStoreError
from opos_tui.services.files import write_atomic
from opos_tui.services.home import Home

SECRETS_ENV = "OPOS_TUI_SECRETS"

PASSWORD = "auth.password"
GOOGLE_CLIENT_SECRET = "oauth.client_secret"
QUEUE_PASSWORD = "queue.password"
"""The PostgreSQL queue's password (``queue.url``), where ``~/.pgpass`` does not hold it."""
SECRET_NAMES = (PASSWORD, GOOGLE_CLIENT_SECRET, QUEUE_PASSWORD)


class SecretStore(Protocol):
    kind: Literal["keyring", "file"]

    def describe(self) -> str: ...
    def get(self, name: str) -> str | None: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


class FileSecretStore:
    """Secrets in a TOML file readable by its owner only. Plain text on disk: said so wherever it is shown."""

    kind: Literal["keyring", "file"] = "file"

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return tr(
            f"file {self.path} (plain text, owner-only 0600; no system keyring available)",
            f"Datei {self.path} (Klartext, nur für den Eigentümer lesbar, 0600; kein System-Schlüsselbund verfügbar)",
        )

    def _read(self) -> dict[str, str]:
        try:
            data = tomllib.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            # Never quote the file: it holds secrets.
            raise SecretStoreError(
                f"cannot read the secret file {self.path} ({type(exc).__name__})",
                f"Geheimnis-Datei {self.path} nicht lesbar ({type(exc).__name__})",
            ) from None
        return {str(k): str(v) for k, v in data.get("secrets", {}).items()}

    def _write(self, secrets: dict[str, str]) -> None:
        try:
            write_atomic(self.path, tomli_w.dumps({"secrets": secrets}).encode("utf-8"))
        except OSError as exc:
            raise SecretStoreError(
                f"cannot write the secret file {self.path}: {exc.strerror}",
                f"Geheimnis-Datei {self.path} nicht schreibbar: {exc.strerror}",
            ) from None

    def get(self, name: str) -> str | None:
        return self._read().get(name)

    def set(self, name: str, value: str) -> None:
        secrets = self._read()
        secrets[name] = value
        self._write(secrets)

    def delete(self, name: str) -> None:
        secrets = self._read()
        if secrets.pop(name, None) is not None:
            self._write(secrets)


class KeyringSecretStore:
    """The system keyring; one service name per home folder, so two installations never share secrets."""

    kind: Literal["keyring", "file"] = "keyring"

    def __init__(self, home: Home) -> None:
        import keyring

        self._keyring = keyring
        self.service = f"opos-tui:{home.root}"

    def describe(self) -> str:
        backend = self._keyring.get_keyring()
        name = f"{type(backend).__module__}.{type(backend).__name__}"
        return tr(f"system keyring ({name})", f"System-Schlüsselbund ({name})")

    @contextmanager
    def _failing_to(self, action_en: str, action_de: str) -> Iterator[None]:
        from keyring.errors import KeyringError

        try:
            yield
        except KeyringError as exc:
            raise SecretStoreError(
                f"the system keyring failed to {action_en}: {exc}",
                f"Der System-Schlüsselbund konnte nicht {action_de}: {exc}",
            ) from None

    def get(self, name: str) -> str | None:
        with self._failing_to("read", "lesen"):
            value: str | None = self._keyring.get_password(self.service, name)
        return value

    def set(self, name: str, value: str) -> None:
        with self._failing_to("write", "schreiben"):
            self._keyring.set_password(self.service, name, value)

    def delete(self, name: str) -> None:
        if self.get(name) is not None:
            with self._failing_to("delete", "löschen"):
                self._keyring.delete_password(self.service, name)


def keyring_available() -> bool:
    import keyring
    from keyring.backends import chainer, fail

    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    return not (isinstance(backend, chainer.ChainerBackend) and not backend.backends)


def open_store(home: Home) -> SecretStore:
    choice = os.environ.get(SECRETS_ENV, "").strip().lower()
    if choice == "file":
        return FileSecretStore(home.secrets_file)
    if choice == "keyring":
        if not keyring_available():
            raise SecretStoreError(
                f"{SECRETS_ENV}=keyring, but no system keyring backend is available",
                f"{SECRETS_ENV}=keyring, aber es ist kein System-Schlüsselbund verfügbar",
            )
        return KeyringSecretStore(home)
    if choice:
        raise SecretStoreError(
            f"{SECRETS_ENV} must be 'file' or 'keyring', not '{choice}'",
            f"{SECRETS_ENV} muss 'file' oder 'keyring' sein, nicht '{choice}'",
        )
    return KeyringSecretStore(home) if keyring_available() else FileSecretStore(home.secrets_file)
