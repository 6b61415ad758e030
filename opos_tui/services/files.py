"""Files on disk: who may read what the installation writes, writing so that a crash or a full disk never
leaves half a file behind, and reading only files that are what they seem.

**Who may read it.** Everything the installation writes (``config.toml``, ``secrets.toml``, ``queue.db`` and
its ``-wal``/``-shm``, the spool's ``done/`` and ``rejected/`` and the ``*.error.txt`` there) is owner-only:
files 0600, folders 0700. The one exception is a folder an admin has shared with a group on purpose, by
making it group-writable with the setgid bit (``chgrp opos DIR && chmod 2770 DIR``): what is made inside it
is shared with that group (files 0660, folders 2770, which passes the sharing on to what is made in them).
:func:`modes_in` is that rule; every writer asks it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from opos_tui.services.errors import OposError

SHARED = stat.S_ISGID | stat.S_IWGRP
"""A folder with both bits was shared with its group by an admin."""


@dataclass(frozen=True)
class Modes:
    """The permission bits of the files and folders opos-tui makes in one place."""

    file: int
    folder: int


PRIVATE_MODES = Modes(file=0o600, folder=0o700)
SHARED_MODES = Modes(file=0o660, folder=0o2770)


def modes_in(folder: Path) -> Modes:
    """The modes of what the installation makes in ``folder``: shared with the folder's group if an admin
    shared the folder (setgid and group-writable), else owner-only."""
    try:
        shared = os.stat(folder).st_mode & SHARED == SHARED
    except OSError:
        shared = False
    return SHARED_MODES if shared else PRIVATE_MODES


def make_folder(folder: Path) -> None:
    """Make ``folder`` and any missing parents, each with the mode :func:`modes_in` gives in its parent
    (whatever the umask). A folder that exists is left as it is."""
    if folder.is_dir():
        return
    make_folder(folder.parent)
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        if folder.is_dir():
            return  # made meanwhile by another process
        raise
    os.chmod(folder, modes_in(folder.parent).folder)


def narrow(path: Path, folder: bool = False) -> None:
    """Take from ``path`` (if it exists and is ours) every permission the rule does not give: for what an
    earlier version made world-readable."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if st.st_uid != os.geteuid():
        return  # not ours to change (another operator's, or the accounting system's)
    modes = modes_in(path.parent)
    allowed = modes.folder if folder else modes.file
    if stat.S_IMODE(st.st_mode) & ~allowed:
        os.chmod(path, stat.S_IMODE(st.st_mode) & allowed)


def make_file(path: Path) -> None:
    """Make ``path`` empty with the rule's mode unless it exists (then only :func:`narrow` it)."""
    mode = modes_in(path.parent).file
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        narrow(path)
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    The temporary file has the rule's mode (:func:`modes_in`) from the start, so a secret is never readable
    by others, not even for a moment.
    """
    import tempfile  # here: with shutil, which it imports, it costs a start that writes nothing 3 ms

    make_folder(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, modes_in(path.parent).file)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # The rename itself is durable only once the folder is synced.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


if sys.platform == "win32":
    import msvcrt

    def _lock_file(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after about ten seconds; the other holder is still at it
                continue

    def _unlock_file(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextlib.contextmanager
def hold_lock(path: Path) -> Iterator[None]:
    """Hold the exclusive lock of the lock file ``path`` (made like every file here, kept afterwards), waiting
    for any other process that holds it: writers that read, change and save take turns through it."""
    make_file(path)
    fd = os.open(path, os.O_RDWR)
    try:
        _lock_file(fd)
        try:
            yield
        finally:
            _unlock_file(fd)
    finally:
        os.close(fd)


# --- reading ------------------------------------------------------------------------------------------


class FileProblem(OposError):
    """A file to read is not what it seems: missing, a link, not a regular file, empty, too large."""


class FileMissing(FileProblem):
    """There is no such file (any more)."""


class FileTooLarge(FileProblem):
    def __init__(self, en: str, de: str, size: int) -> None:
        super().__init__(en, de)
        self.size = size


class StillWriting(FileProblem):
    """Another process has the file open for writing, or it changed while it was read: try again later."""


@dataclass(frozen=True)
class Snapshot:
    """A file's bytes as read, and its identity and state then."""

    data: bytes
    stat: os.stat_result

    @property
    def identity(self) -> tuple[int, int]:
        return self.stat.st_dev, self.stat.st_ino

    def unchanged(self, now: os.stat_result) -> bool:
        """Whether ``now`` (a later stat of the same name) is still the file as it was read."""
        return _state(now) == _state(self.stat)


def _state(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def being_written(fd: int) -> bool:
    """Whether some process has the file open for writing.

    Linux refuses a read lease (``F_SETLEASE``) with EAGAIN while a writer has the file open. A lease needs
    the file's owner (or CAP_LEASE) and a file system that grants leases: where it cannot be taken for any
    other reason, this says False, and only a change while reading is noticed (see :func:`read_regular`).
    """
    if sys.platform != "linux":
        return False
    import fcntl

    try:
        # A writer opening the file while the lease is held breaks it with a signal, SIGIO by default, which
        # would end this process: ask for one that is ignored by default instead.
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return exc.errno == errno.EAGAIN
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def read_regular(
    path: Path, limit: int, what: tuple[str, str], dir_fd: int | None = None, follow: bool = True
) -> Snapshot:
    """The bytes of ``path`` if it is a regular, non-empty file of at most ``limit`` bytes that no process is
    writing; else a :class:`FileProblem` naming it as ``what`` (English, German).

    Opened without blocking (a FIFO does not hang) and, with ``follow=False``, without following a symbolic
    link; relative to ``dir_fd`` (by its name) where given. Kind, size and writers are checked on the open
    file before anything is read, so a device or pipe is never read and nothing can be swapped in between
    the check and the read; the file must be the same size and age after the read as before.
    """
    en, de = what
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path.name if dir_fd is not None else path, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise FileMissing(f"{en} not found: {path}", f"{de} nicht gefunden: {path}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow:
            raise FileProblem(
                f"{en} {path.name} is a symbolic link: only regular files in the folder itself are read",
                f"{de} {path.name} ist ein symbolischer Link: nur normale Dateien im Ordner selbst werden gelesen",
            ) from None
        raise FileProblem(
            f"cannot read {en} {path}: {exc.strerror}", f"{de} {path} nicht lesbar: {exc.strerror}"
        ) from None
    try:
        before = os.fstat(fd)
        if stat.S_ISDIR(before.st_mode):
            raise FileProblem(f"{en} is a folder: {path}", f"{de} ist ein Ordner: {path}")
        if not stat.S_ISREG(before.st_mode):
            raise FileProblem(
                f"{en} {path} is not a regular file (a device, pipe or socket)",
                f"{de} {path} ist keine normale Datei (ein Gerät, eine Pipe oder ein Socket)",
            )
        if not follow and before.st_nlink > 1:
            raise FileProblem(
                f"{en} {path.name} has further names (hard links): only files of the folder itself are read",
                f"{de} {path.name} hat weitere Namen (harte Links): nur Dateien des Ordners selbst werden gelesen",
            )
        if being_written(fd):
            raise StillWriting(f"{en} {path} is still being written", f"{de} {path} wird noch geschrieben")
        if before.st_size == 0:
            raise FileProblem(f"{en} {path} is empty (0 bytes)", f"{de} {path} ist leer (0 Bytes)")
        if before.st_size > limit:
            size = f"{before.st_size / 1048576:.1f} MB"
            raise FileTooLarge(
                f"{en} {path} is {size}, more than {limit // 1024} KB",
                f"{de} {path} ist {size} groß, mehr als {limit // 1024} KB",
                before.st_size,
            )
        data = _read_at_most(fd, before.st_size + 1)
        after = os.fstat(fd)
    except OSError as exc:
        raise FileProblem(
            f"cannot read {en} {path}: {exc.strerror}", f"{de} {path} nicht lesbar: {exc.strerror}"
        ) from None
    finally:
        os.close(fd)
    if len(data) != before.st_size or _state(after) != _state(before):
        raise StillWriting(f"{en} {path} changed while it was read", f"{de} {path} hat sich beim Lesen geändert")
    return Snapshot(data, before)


def _read_at_most(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
