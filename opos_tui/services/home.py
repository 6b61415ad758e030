"""Where one installation lives: config.toml, queue.db, secrets.toml (without a keyring) and spool/ in one folder.

Several operators on a terminal server share one queue by pointing OPOS_TUI_HOME at one folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from opos_tui.services.files import make_folder

HOME_ENV = "OPOS_TUI_HOME"


@dataclass(frozen=True)
class Home:
    """One installation's folder and where each of its files is."""

    root: Path

    @classmethod
    def resolve(cls, explicit: str | os.PathLike[str] | None = None) -> Home:
        """``--home`` if given, else ``$OPOS_TUI_HOME``, else the platform's user data folder."""
        if explicit:
            return cls(Path(explicit).expanduser().absolute())
        env = os.environ.get(HOME_ENV)
        if env:
            return cls(Path(env).expanduser().absolute())
        import platformdirs  # only here: an installation named by --home or OPOS_TUI_HOME starts without it

        return cls(Path(platformdirs.user_data_dir("opos-tui", appauthor=False)))

    @property
    def config_file(self) -> Path:
        return self.root / "config.toml"

    @property
    def config_checked(self) -> Path:
        """The config.toml the settings model last accepted, as it was (``config_file.checked``)."""
        return self.root / "config.checked"

    @property
    def queue_db(self) -> Path:
        return self.root / "queue.db"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.toml"

    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    def ensure(self) -> None:
        """Create the folder (owner-only: it holds the queue and possibly secrets; see files.modes_in)."""
        make_folder(self.root)
