"""A real PostgreSQL server for the tests: one per test session, from the ``pgserver`` package (server binaries
from pip, listening on a Unix socket only), or the server that ``OPOS_TUI_TEST_POSTGRESQL`` names (a libpq URI
of a database whose user may create databases).

``postgresql_url`` gives each test a database of its own (dropped afterwards) and its URI. When no server can
be had, the tests that need one are skipped, with the reason in capitals in pytest's summary.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_ENV = "OPOS_TUI_TEST_POSTGRESQL"

_numbers = itertools.count()


def _no_server(why: str) -> str:
    return f"NO POSTGRESQL SERVER, THE POSTGRESQL QUEUE WAS NOT TESTED: {why}"


# Run in a process of its own, in a session of its own: signals the tests send to their processes (Ctrl+C to a
# process group, SIGTERM) never reach the server. It stops the server when its standard input closes, which
# happens when the test session ends however it ends.
_SERVE = """
import sys
import pgserver
server = pgserver.get_server(sys.argv[1], cleanup_mode="stop")
print(server.get_uri(), flush=True)
sys.stdin.read()
server.cleanup()
"""


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a database on the session's server through which test databases are made."""
    given = os.environ.get(SERVER_ENV)
    if given:
        yield given
        return
    if importlib.util.find_spec("pgserver") is None:
        pytest.skip(_no_server("pgserver is not installed; pip install -e '.[test]'"))
    data = Path(tempfile.mkdtemp(prefix="opos-pg-"))  # short: the server's Unix socket lives in it
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(data / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        url = server.stdout.readline().strip()
        if not url:
            server.stdin.close()
            _, err = server.communicate(timeout=60)
            pytest.skip(_no_server(f"pgserver could not start one in {data}: {err.strip()[-2000:]}"))
        yield url
    finally:
        if server.poll() is None:
            server.stdin.close()
            server.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    """``url`` (a ``postgresql://…/db?…`` URI) with another database name."""
    head, _, tail = url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{tail}" if tail else "")


@pytest.fixture
def postgresql_url(postgresql_server: str) -> Iterator[str]:
    """A fresh, empty database for this test alone, as a libpq URI."""
    import psycopg

    name = f"opos_test_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(postgresql_server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _with_database(postgresql_server, name)
    finally:
        with psycopg.connect(postgresql_server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
