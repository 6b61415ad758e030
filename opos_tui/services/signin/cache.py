"""The token cache: one file in the home folder, shared by every process of the installation.

``oauth-tokens.json`` holds msal's serialized token cache (Microsoft) and the Google tokens. It is never in
``config.toml``, the queue, a log or a transcript. It is made like ``secrets.toml``: owner-only (0600), or
0660 in a home an admin shared with a group (its operators send with the same sign-in).

Where the secret store is the system keyring (Windows Credential Locker, protected by DPAPI; macOS Keychain;
the Secret Service on a Linux desktop), the file's content is encrypted with AES-256-GCM under a random key
kept in that keyring. The key is 32 bytes: it fits every keyring (the cache itself does not: Windows limits a
credential to 2560 bytes), and the file stays a file, so the lock and the atomic writes below are the same in
both cases. Where the secret store is the file (``secrets.py``: no keyring backend, e.g. an SSH session on
Linux, or ``OPOS_TUI_SECRETS=file``) the tokens are plain text in the 0600 file. ``oauth status`` says which.

A cache written in the other form is rewritten in the current one the next time it is used: a plain cache is
encrypted once a keyring is there, an encrypted one is decrypted into the plain file when the secret store is
the file again while the keyring still holds the key. An encrypted cache whose key cannot be read any more
is never treated as empty behind anyone's back: using it raises :class:`CacheUnreadable` ("sign in again"),
and only a new sign-in (or ``oauth logout``) replaces it.

Every process reads, refreshes and writes it while holding ``oauth-tokens.json.lock``: two processes that
refresh at once take turns, and the second finds the first one's fresh token instead of using the refresh
token that was just rotated away (Microsoft rotates it on every use).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opos_tui.i18n import tr
from opos_tui.services.errors import OposError, SecretStoreError
from opos_tui.services.files import hold_lock, make_folder, write_atomic
from opos_tui.services.home import Home
from opos_tui.services.secrets import KeyringSecretStore, keyring_available, open_store
from opos_tui.services.signin.errors import SignInRequired

KEY_NAME = "oauth.token_cache_key"
"""The name of the cache's key in the keyring (the installation's service, beside its other secrets)."""
SEALED = "AES-256-GCM"
"""The ``encrypted`` field of an encrypted cache file."""
_BOUND_TO = b"opos-tui oauth-tokens.json"
"""Associated data: a sealed cache opens only as a token cache."""


class CacheUnreadable(SignInRequired):
    """The cache is encrypted and its key cannot be had (deleted, another user's keyring, no keyring here)."""


class TokenCacheFile:
    def __init__(self, home: Home) -> None:
        self.home = home
        self.path = home.root / "oauth-tokens.json"
        self.lock_path: Path = self.path.with_name(self.path.name + ".lock")

    def _keyring(self) -> KeyringSecretStore | None:
        """The keyring that holds the key when the tokens are to be encrypted; None for the plain file."""
        store = open_store(self.home)
        return store if isinstance(store, KeyringSecretStore) else None

    def encrypted(self) -> bool:
        """Whether the tokens are (or, once written, will be) kept encrypted."""
        return self._keyring() is not None

    def describe(self) -> str:
        keyring = self._keyring()
        if keyring is None:
            return tr(
                f"file {self.path} (not encrypted, readable by its owner only; no system keyring to hold a key)",
                f"Datei {self.path} (unverschlüsselt, nur für den Eigentümer lesbar; kein System-Schlüsselbund für "
                "einen Schlüssel)",
            )
        return tr(
            f"file {self.path} (encrypted with {SEALED}; its key is in the {keyring.describe()})",
            f"Datei {self.path} (verschlüsselt mit {SEALED}; ihr Schlüssel liegt im {keyring.describe()})",
        )

    @contextlib.contextmanager
    def locked(self, replace_unreadable: bool = False) -> Iterator[dict[str, Any]]:
        """The cache's content, under the lock; whatever the caller changed in it is saved when it ends (in the
        form the secret store gives, which also rewrites a cache kept in the other form).

        An encrypted cache whose key cannot be had raises :class:`CacheUnreadable`; with ``replace_unreadable``
        (a new sign-in) it starts empty instead, and is replaced only if the caller puts something in it."""
        with self._held():
            keyring = self._keyring()
            try:
                data, sealed = self._read(keyring)
                rewrite = sealed is not None and sealed != (keyring is not None)
            except CacheUnreadable:
                if not replace_unreadable:
                    raise
                data, rewrite = {}, False
            before = json.dumps(data, sort_keys=True)
            yield data
            if rewrite or json.dumps(data, sort_keys=True) != before:
                self._write(data, keyring)

    def forget(self, key: str) -> bool:
        """Sign out: drop ``key``'s tokens; True if there were any. An encrypted cache that cannot be opened any
        more is deleted whole (nobody can use what it holds)."""
        with self._held():
            keyring = self._keyring()
            try:
                data, _sealed = self._read(keyring)
            except CacheUnreadable:
                self.path.unlink()
                return True
            if data.pop(key, None) is None:
                return False
            self._write(data, keyring)
            return True

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        try:
            make_folder(self.path.parent)
            with hold_lock(self.lock_path):
                yield
        except OSError as exc:
            raise OposError(
                f"cannot use the sign-in cache {self.path}: {exc.strerror or exc} (check the home folder's"
                " permissions)",
                f"Anmelde-Cache {self.path} nicht nutzbar: {exc.strerror or exc} (Rechte des Home-Ordners prüfen)",
            ) from None

    def _write(self, data: dict[str, Any], keyring: KeyringSecretStore | None) -> None:
        write_atomic(self.path, self._seal(data, keyring) if keyring else json.dumps(data).encode("utf-8"))

    # --- the file's two forms -----------------------------------------------------------------------

    def _read(self, keyring: KeyringSecretStore | None) -> tuple[dict[str, Any], bool | None]:
        """The content and whether the file holds it encrypted (None: no file, or nothing usable in it)."""
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}, None
        except (ValueError, UnicodeDecodeError):
            return {}, None  # a damaged cache only means signing in again; never quote it (it holds tokens)
        if not isinstance(data, dict):
            return {}, None
        if "encrypted" not in data:
            return data, False
        return self._open(data, keyring), True

    def _open(self, sealed: dict[str, Any], keyring: KeyringSecretStore | None) -> dict[str, Any]:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if keyring is None:
            # The secret store is the file now; the keyring may still be there to decrypt it one last time.
            if not keyring_available():
                raise self._unreadable(
                    "no system keyring is available to this process",
                    "diesem Prozess steht kein System-Schlüsselbund zur Verfügung",
                )
            keyring = KeyringSecretStore(self.home)
        try:
            key = _key(keyring.get(KEY_NAME))
        except SecretStoreError as exc:
            raise self._unreadable(exc.en, exc.de) from None
        if key is None:
            raise self._unreadable(
                f"its key is not in the {keyring.describe()} (deleted, damaged, or another user's keyring)",
                f"ihr Schlüssel ist nicht im {keyring.describe()} (gelöscht, beschädigt, oder Schlüsselbund eines "
                "anderen Benutzers)",
            )
        try:
            plain = AESGCM(key).decrypt(_decode(sealed["nonce"]), _decode(sealed["ciphertext"]), _BOUND_TO)
            data = json.loads(plain)
        except (InvalidTag, KeyError, TypeError, ValueError):
            raise self._unreadable(
                "it does not open with the key in the keyring (damaged, or written with another key)",
                "sie lässt sich mit dem Schlüssel im Schlüsselbund nicht öffnen (beschädigt, oder mit einem anderen "
                "Schlüssel geschrieben)",
            ) from None
        return data if isinstance(data, dict) else {}

    def _seal(self, data: dict[str, Any], keyring: KeyringSecretStore) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = _key(keyring.get(KEY_NAME))
        if key is None:  # the first encrypted write (or a key nothing can be opened with any more)
            key = AESGCM.generate_key(bit_length=256)
            keyring.set(KEY_NAME, _encode(key))
        nonce = os.urandom(12)
        ciphertext = AESGCM(key).encrypt(nonce, json.dumps(data).encode("utf-8"), _BOUND_TO)
        envelope = {"encrypted": SEALED, "nonce": _encode(nonce), "ciphertext": _encode(ciphertext)}
        return json.dumps(envelope).encode("utf-8")

    def _unreadable(self, why_en: str, why_de: str) -> CacheUnreadable:
        return CacheUnreadable(
            f"the token cache {self.path} is encrypted and cannot be opened: {why_en}",
            f"der Token-Cache {self.path} ist verschlüsselt und lässt sich nicht öffnen: {why_de}",
        )


def _encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _key(stored: str | None) -> bytes | None:
    """The 32-byte key from its keyring entry; None if there is none or it is not one."""
    try:
        key = _decode(stored) if stored is not None else b""
    except ValueError:
        return None
    return key if len(key) == 32 else None
