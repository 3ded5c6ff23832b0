"""Urllib3FhirClient against a raw loopback server whose every connection and request is
counted: one POST is one request (no hidden retry, no redirect followed), a kept-alive
connection is reused, one the receiver closed while idle is replaced, and silence or a dropped
connection is a TransientError."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from hub.adapters.http_client import Urllib3FhirClient
from hub.errors import TransientError

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: 2\r\n\r\n{}"
REDIRECT = b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"


@dataclass
class RawServer:
    """Answers each request with `answer` (None: close without answering; "silent": say
    nothing); closes a connection after `close_after` requests on it."""

    answer: bytes | str | None = OK
    close_after: int = 1000
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    sock: socket.socket = field(default_factory=socket.socket)

    def start(self) -> RawServer:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/fhir/$process-message"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            buffered, served = b"", 0
            while served < self.close_after:
                while b"\r\n\r\n" not in buffered:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffered += chunk
                head, _, rest = buffered.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head)
                buffered, served = rest[length:], served + 1
                if self.answer is None:
                    return
                if self.answer == "silent":
                    time.sleep(5)
                    return
                assert isinstance(self.answer, bytes)
                conn.sendall(self.answer)

    def stop(self) -> None:
        self.sock.close()


@pytest.fixture
def client() -> Iterator[Urllib3FhirClient]:
    c = Urllib3FhirClient()
    yield c
    c.close()


def post(client: Urllib3FhirClient, server: RawServer, timeout: float = 3) -> int:
    return client.post_message(
        url=server.url,
        body=b'{"resourceType": "Bundle"}',
        headers={"Content-Type": "application/fhir+json", "X-Request-Id": "r-1"},
        timeout=timeout,
    ).status


def test_posts_share_one_kept_alive_connection(client: Urllib3FhirClient) -> None:
    server = RawServer().start()
    try:
        assert [post(client, server) for _ in range(3)] == [200, 200, 200]
        assert (len(server.requests), server.connections) == (3, 1)
    finally:
        server.stop()


def test_a_connection_the_receiver_closed_while_idle_is_replaced(
    client: Urllib3FhirClient,
) -> None:
    server = RawServer(close_after=1).start()
    try:
        assert post(client, server) == 200
        time.sleep(0.2)  # the server has closed it by now
        assert post(client, server) == 200
        assert (len(server.requests), server.connections) == (2, 2)
    finally:
        server.stop()


def test_a_redirect_is_returned_as_it_came_and_not_followed(client: Urllib3FhirClient) -> None:
    server = RawServer(answer=REDIRECT).start()
    try:
        assert post(client, server) == 302
        assert len(server.requests) == 1
    finally:
        server.stop()


def test_a_connection_dropped_before_the_answer_is_transient_and_not_retried_in_secret(
    client: Urllib3FhirClient,
) -> None:
    server = RawServer(answer=None).start()
    try:
        with pytest.raises(TransientError, match="connection failed"):
            post(client, server)
        time.sleep(0.2)
        assert len(server.requests) == 1  # the POST arrived once: no hidden second copy
    finally:
        server.stop()


def test_no_answer_within_the_timeout_is_transient(client: Urllib3FhirClient) -> None:
    server = RawServer(answer="silent").start()
    try:
        with pytest.raises(TransientError, match=r"no answer within 0.3s"):
            post(client, server, timeout=0.3)
        assert len(server.requests) == 1
    finally:
        server.stop()


def test_nothing_listening_is_transient(client: Urllib3FhirClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransientError, match="connection failed"):
        client.post_message(url=f"http://127.0.0.1:{port}/fhir", body=b"{}", headers={}, timeout=1)


def test_the_request_line_carries_the_path_and_query_and_a_pool_closed_since_is_replaced(
    client: Urllib3FhirClient,
) -> None:
    """The pool and request target are worked out once per URL: the request still names the
    URL's own path and query, and after its pool is closed (urllib3 retiring a pool it no
    longer keeps) the next POST opens a new connection instead of failing."""
    server = RawServer().start()
    url = server.url + "?_format=json"
    try:
        for _ in range(2):
            client.post_message(url=url, body=b"{}", headers={}, timeout=3)
        assert server.requests[0].startswith(b"POST /fhir/$process-message?_format=json HTTP/1.1")
        retired = client._target(url)[0]
        client._pool.clear()  # urllib3 retires a pool it no longer keeps: dropped and closed
        retired.close()
        assert client.post_message(url=url, body=b"{}", headers={}, timeout=3).status == 200
        assert (len(server.requests), server.connections) == (3, 2)
    finally:
        server.stop()


def test_a_url_that_cannot_be_posted_to_is_a_clear_transient_error(
    client: Urllib3FhirClient,
) -> None:
    for url in ("ftp://127.0.0.1/fhir", "http:///no-host"):
        with pytest.raises(TransientError, match="connection failed"):
            client.post_message(url=url, body=b"{}", headers={}, timeout=1)
