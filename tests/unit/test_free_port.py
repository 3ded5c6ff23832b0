"""The tests' free_port: below the kernel's ephemeral range (so no outgoing connection can take
it between the test's pick and the server's bind), bindable, and never handed out twice."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import _below_ephemeral_range, free_port

pytestmark = pytest.mark.unit


def test_free_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    low, high = _below_ephemeral_range()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(low <= p <= high for p in ports)
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free: raises if not


def test_a_port_in_use_is_never_handed_out() -> None:
    low, high = _below_ephemeral_range()
    held = []
    try:
        for port in range(low, low + 200):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            s.listen()
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        assert taken  # the test did hold some ports
        picks = {free_port() for _ in range(100)}
        assert not picks & taken
    finally:
        for s in held:
            s.close()
