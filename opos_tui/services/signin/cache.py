"""The token cache: one file in the home folder, shared by every process of the installation.

``oauth-tokens.json`` holds msal's serialized token cache (Microsoft) and the Google tokens. It is never in
``config.toml``, the queue, a log or a transcript. It is made like ``secrets.toml``: owner-only (0600), or
0660 in a home an admin shared with a group (its operators send with the same sign-in). It is plain text:
an SSH session on Linux has no Secret Service to encrypt it with, so opos-tui uses the same file everywhere
and ``oauth status`` says so.

Every process reads, refreshes and writes it while holding ``oauth-tokens.json.lock``: two processes that
refresh at once take turns, and the second finds the first one's fresh token instead of using the refresh
token that was just rotated away (Microsoft rotates it on every use).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from opos_tui.i18n import tr
from opos_tui.services.errors import OposError
from opos_tui.services.files import hold_lock, make_folder, write_atomic
from opos_tui.services.home import Home


class TokenCacheFile:
    def __init__(self, home: Home) -> None:
        self.path = home.root / "oauth-tokens.json"
        self.lock_path: Path = self.path.with_name(self.path.name + ".lock")

    def describe(self) -> str:
        return tr(
            f"file {self.path} (not encrypted, readable by its owner only)",
            f"Datei {self.path} (unverschlüsselt, nur für den Eigentümer lesbar)",
        )

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        """The cache's content, under the lock; whatever the caller changed in it is saved when it ends."""
        try:
            make_folder(self.path.parent)
            with hold_lock(self.lock_path):
                data = self._read()
                before = json.dumps(data, sort_keys=True)
                yield data
                if json.dumps(data, sort_keys=True) != before:
                    write_atomic(self.path, json.dumps(data).encode("utf-8"))
        except OSError as exc:
            raise OposError(
                f"cannot use the sign-in cache {self.path}: {exc.strerror or exc} (check the home folder's"
                " permissions)",
                f"Anmelde-Cache {self.path} nicht nutzbar: {exc.strerror or exc} (Rechte des Home-Ordners prüfen)",
            ) from None

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text("utf-8"))
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError):
            return {}  # a damaged cache only means signing in again; never quote it (it holds tokens)
        return data if isinstance(data, dict) else {}
