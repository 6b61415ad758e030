"""A real PostgreSQL server for the tests: one per test session, from the ``pgserver`` package (server binaries
from pip, listening on a Unix socket only), or the server that ``OPOS_TUI_TEST_POSTGRESQL`` names (a libpq URI
of a database whose user may create databases).

``postgresql_url`` gives each test a database of its own (dropped afterwards) and its URI. When no server can
be had, the tests that need one are skipped, with the reason in capitals in pytest's summary.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER_ENV = "OPOS_TUI_TEST_POSTGRESQL"

_numbers = itertools.count()


def _no_server(why: str) -> str:
    return f"NO POSTGRESQL SERVER, THE POSTGRESQL QUEUE WAS NOT TESTED: {why}"


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URI of a database on the session's server through which test databases are made."""
    given = os.environ.get(SERVER_ENV)
    if given:
        yield given
        return
    try:
        import pgserver
    except ImportError as exc:
        pytest.skip(_no_server(f"pgserver is not installed ({exc}); pip install -e '.[test]'"))
    # A short path: the server's Unix socket lives in its data folder, and socket paths are short.
    data = Path(tmp_path_factory.mktemp("pg", numbered=True))
    try:
        server = pgserver.get_server(data, cleanup_mode="stop")
    except Exception as exc:  # whatever keeps it from starting: said loudly, in the skip reason
        pytest.skip(_no_server(f"pgserver could not start one in {data}: {exc}"))
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()


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
