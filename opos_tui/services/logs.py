"""The installation's log: ``logs/opos-tui.log`` in the home folder, one line per mail and per run.

Rotated by size (1 MB, five old files kept), owner-only (0600) like everything else in the home. Under
systemd (``INVOCATION_ID`` or ``JOURNAL_STREAM`` set) the same lines go to stderr too, where the journal
picks them up with its own time stamps. Nothing secret is ever logged: lines carry item numbers,
recipients, outcomes and the server's replies, and error messages are worded never to contain a secret.
"""

from __future__ import annotations

import io
import logging
import os
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path

from opos_tui.services.files import make_file, make_folder
from opos_tui.services.home import Home

LOG_NAME = "opos_tui.run"
MAX_BYTES = 1024 * 1024
BACKUPS = 5


def log_file(home: Home) -> Path:
    return home.root / "logs" / "opos-tui.log"


def under_systemd() -> bool:
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("JOURNAL_STREAM"))


class _OwnerOnlyRotatingFileHandler(RotatingFileHandler):
    """Creates the log (and each new one after a rotation) owner-only (or group-shared, see files.modes_in)
    from the start."""

    def _open(self) -> io.TextIOWrapper:
        make_file(Path(self.baseFilename))
        return open(self.baseFilename, "a", encoding=self.encoding, errors=self.errors)


def open_log(home: Home) -> logging.Logger:
    """The run log of this home (file, and stderr under systemd); ``close_log`` releases it."""
    path = log_file(home)
    make_folder(path.parent)
    logger = logging.getLogger(LOG_NAME)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    close_log(logger)
    handler = _OwnerOnlyRotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    logger.addHandler(handler)
    if under_systemd():
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logger.addHandler(stream)
    return logger


def close_log(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
