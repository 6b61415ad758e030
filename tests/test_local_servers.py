"""The test servers' ports hold when tests run in parallel processes."""

from __future__ import annotations

import errno
import socket

import pytest

from tests.servers.smtp import HOST, free_port


def test_a_free_port_stays_refused_while_others_start_servers() -> None:
    port = free_port()
    with socket.socket() as other, pytest.raises(OSError) as caught:  # a server started by a parallel test
        other.bind((HOST, port))
    assert caught.value.errno == errno.EADDRINUSE
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=5)
