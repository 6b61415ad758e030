"""What only the PostgreSQL engine does beyond the queue contract (tests/test_queue_contract.py): a farm of hosts
sending from one database, attachment bytes kept apart, its schema, its errors, choosing it by ``queue.url``,
and moving a SQLite queue into it (``queue migrate``). Against a real server (tests/servers/postgresql.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from opos_tui.services.home import Home
from opos_tui.services.queue import HOST_ENV, DuplicateImport, QueueError, Rendered, SqliteQueue, Status, open_queue
from opos_tui.services.queue.postgresql import SCHEMA_VERSION, PostgresQueue
from tests.conftest import ROOT, Cli, send_process
from tests.servers.smtp import StartServer
from tests.test_crash import fill, received_ids
from tests.test_queue_contract import new_item
from tests.test_send import configure


def test_two_hosts_on_one_database_send_each_mail_once(
    cli: Cli, home: Home, smtp_server: StartServer, tmp_path: Path, postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = smtp_server("plain")
    configure(cli, home, server, **{"queue.url": postgresql_url})
    ids = fill(cli, tmp_path, 60)
    other = Home(tmp_path / "terminal-server-2")  # the second host's own installation folder
    other.ensure()
    shutil.copy(home.config_file, other.config_file)
    monkeypatch.setenv(HOST_ENV, "terminal-server-1")
    first = send_process(home)
    monkeypatch.setenv(HOST_ENV, "terminal-server-2")
    second = send_process(other)
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    assert not (home.queue_db.exists() or other.queue_db.exists())  # no SQLite queue beside the farm's
    with open_queue(other) as q:
        assert q.counts()[Status.SENT] == 60
        message_ids = {q.get(i).message_id for i in ids}
    counts = received_ids(server)
    assert set(counts) == message_ids  # nothing lost
    assert max(counts.values()) == 1  # nothing sent twice
    assert all(out.count(" sent: 250") > 0 for out, _ in outs)  # both hosts took their share


def _role_without_attachment_bytes(url: str) -> str:
    """A user of the database that may do everything but read attachment bytes and rendered mails; its
    connection string."""
    with psycopg.connect(url, autocommit=True) as db:
        name = f"lister_{db.info.dbname}"
        db.execute(f"CREATE ROLE {name} LOGIN")
        db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}")
        db.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {name}")
        db.execute(f"REVOKE ALL ON attachment_data FROM {name}")
        db.execute(f"REVOKE ALL ON rendered FROM {name}")
    return conninfo.make_conninfo(url, user=name)


def test_listing_and_claiming_never_read_attachment_bytes_or_rendered_mails(postgresql_url: str) -> None:
    with PostgresQueue(postgresql_url) as owner:
        ids = owner.enqueue_many(new_item(n, rendered=Rendered(b"From: x\r\n\r\nbody\r\n", 9)) for n in range(1, 4))
    with PostgresQueue(_role_without_attachment_bytes(postgresql_url)) as queue:
        assert [r.id for r in queue.page(search="mahnung")] == ids[::-1]
        assert queue.page()[0].attachments == ("Mahnung_3_Größe.pdf",)
        assert queue.count() == 3 and queue.counts()[Status.PENDING] == 3 and queue.version() > 0
        claimed = queue.claim()
        assert claimed is not None and claimed.attachment_infos[0].size > 0
        queue.record_sent(claimed.id, "250 ok")
        with pytest.raises(QueueError, match="attachment_data"):
            queue.attachments(claimed.id)  # the methods that read them
        with pytest.raises(QueueError, match="rendered"):
            queue.rendered(claimed.id)


def test_an_empty_or_newer_database_is_refused(postgresql_url: str) -> None:
    with pytest.raises(QueueError, match="holds no opos-tui queue"):
        PostgresQueue(postgresql_url, create=False)
    PostgresQueue(postgresql_url).close()
    with psycopg.connect(postgresql_url, autocommit=True) as db:
        db.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(QueueError, match="newer opos-tui"):
        PostgresQueue(postgresql_url)


def test_an_unreachable_database_is_one_line_without_the_password(cli: Cli, tmp_path: Path) -> None:
    url = f"postgresql://opos@/opos?host={tmp_path / 'no-server-here'}"
    assert cli("config", "set", "queue.url", url).code == 0
    assert cli("config", "set-secret", "queue.password", "--stdin", stdin="geheim-4711\n").code == 0
    shown = json.loads(cli("config", "show", "--json").out)
    assert shown["queue.password_set"] is True and "geheim-4711" not in json.dumps(shown)
    result = cli("queue")
    assert result.code == 1
    assert result.err.startswith("opos-tui: cannot reach the queue database postgresql://opos@/opos?host=")
    assert len(result.err.splitlines()) == 1 and "geheim-4711" not in result.err + result.out
    refused = cli("config", "set", "queue.password", "geheim-4711")
    assert refused.code == 2 and "config set-secret queue.password --stdin" in refused.err


def test_psycopg_is_imported_only_for_a_postgresql_queue(home: Home) -> None:
    code = "import sys\nfrom opos_tui.cli import main\nassert main(['queue']) == 0\nprint('psycopg' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "False"


def test_migrate_moves_every_item_attachment_and_history_line_once(
    cli: Cli, home: Home, tmp_path: Path, postgresql_url: str
) -> None:
    with open_queue(home) as q:
        ids = q.enqueue_many(new_item(n, source_key=f"manifest-{n}") for n in range(1, 6))
        sent, deferred, held, checked, deleted = ids
        for item_id, finish in (
            (sent, lambda i: q.record_sent(i, "250 ok", refused={"cc@example.com": "550 no such user"})),
            (deferred, lambda i: q.record_deferred(i, "451 later", datetime.fromtimestamp(q.clock() + 300, UTC))),
        ):
            assert q.claim([item_id]) is not None
            finish(item_id)
        q.hold([held])
        q.record_checks([(checked, False, "R-00004 missing")])
        q.delete([deleted])  # the newest id is gone: a new item must not get it again
    before = SqliteQueue(home.queue_db)
    assert cli("queue", "--status", "held", "--json").code == 0  # the listing's options still work as before

    result = cli("queue", "migrate", "--to", postgresql_url)
    assert result.code == 0, result.err
    assert "moved 4 items, 4 attachments and 3 history lines" in result.out and "queue.url" in result.out
    assert json.loads(cli("config", "show", "--json").out)["queue.url"] == postgresql_url
    with open_queue(home) as moved:
        assert isinstance(moved, PostgresQueue)
        for item_id in (sent, deferred, held, checked):
            assert moved.get(item_id) == before.get(item_id)  # ids, Message-IDs, states, times, history
            assert moved.attachments(item_id) == before.attachments(item_id)
        assert moved.check_detail(checked) == "R-00004 missing" and moved.flagged([checked]) == [checked]
        assert moved.enqueue(new_item(9)).id == deleted + 1
        with pytest.raises(DuplicateImport):
            moved.enqueue(new_item(10, source_key="manifest-1"))  # what was imported stays imported
    listed = json.loads(cli("queue", "--json").out)
    assert [row["id"] for row in listed] == [deleted + 1, checked, held, deferred, sent]
    before.close()

    again = cli("queue", "migrate", "--to", postgresql_url)
    assert again.code == 1
    assert "already holds a queue (5 items): nothing was moved" in again.err


def test_queue_migrate_usage(cli: Cli) -> None:
    assert cli("queue", "migrate").code == 2
    assert cli("queue", "--to", "postgresql:///opos").code == 2
    wrong = cli("queue", "migrate", "--to", "postgresql://opos:geheim@db.example.test/opos")
    assert wrong.code == 2 and "must not hold the password" in wrong.err
