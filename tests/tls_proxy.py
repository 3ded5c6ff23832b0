"""A TLS-terminating TCP proxy for tests: it stands in for RabbitMQ's TLS listener (port 5671)
without touching the shared broker. It demands a client certificate signed by the CA it is
given (as RabbitMQ does with verify_peer and fail_if_no_peer_cert), then forwards the plaintext
to the broker's AMQP port.

Threads and blocking handshakes rather than asyncio: a refused handshake must send its TLS
alert to the client, as RabbitMQ does, and asyncio's TLS drops the connection without it. One
thread per connection moves bytes both ways, so no SSL object is used by two threads at once.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TlsProxy:
    """`start()` listens on 127.0.0.1:`port`; `peers` holds the common name of each client
    certificate it accepted, `refused` the reason for each handshake it refused."""

    cert: Path
    key: Path
    client_ca: Path  # client certificates must be signed by this CA
    upstream: tuple[str, int] = ("127.0.0.1", 5672)
    port: int = 0  # given: listen there (a stand-in for a broker whose certificate changed)
    peers: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    _listener: socket.socket | None = None
    _open: set[socket.socket] = field(default_factory=set)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> TlsProxy:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.client_ca))
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(self.cert, self.key)
        self._listener = socket.create_server(("127.0.0.1", self.port))  # 0: any free port
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept, context)
        return self

    def url(self, vhost: str, *, host: str = "localhost") -> str:
        return f"amqps://guest:guest@{host}:{self.port}/{vhost}"

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self, context: ssl.SSLContext) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, context, raw)

    def _serve(self, context: ssl.SSLContext, raw: socket.socket) -> None:
        raw.settimeout(10)
        self._track(raw)
        try:
            tls = context.wrap_socket(raw, server_side=True)  # handshakes; refusal alerts
        except (ssl.SSLError, OSError) as exc:
            self.refused.append(getattr(exc, "reason", None) or str(exc))
            raw.close()
            return
        self._track(tls)
        subject = dict(x[0] for x in (tls.getpeercert() or {}).get("subject", ()))
        self.peers.append(str(subject.get("commonName")))
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            tls.close()
            return
        self._track(upstream)
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(tls, selectors.EVENT_READ, upstream)
                selector.register(upstream, selectors.EVENT_READ, tls)
                while not self._stopping.is_set():
                    for key, _ in selector.select(timeout=0.2):
                        if not _forward(key.fileobj, key.data):  # type: ignore[arg-type]
                            return
        except OSError:
            pass  # either side went away, or stop() closed them
        finally:
            for s in (tls, upstream):
                s.close()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._open.add(s)

    def stop(self) -> None:
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
        for thread in self._threads:
            thread.join(timeout=5)


def _forward(source: socket.socket, target: socket.socket) -> bool:
    """Moves what `source` has (all of it: a TLS socket may hold decrypted bytes the selector
    cannot see) to `target`; False when either side has closed."""
    while True:
        try:
            data = source.recv(65536)
        except TimeoutError:
            return True
        if not data:
            target.close()
            return False
        target.sendall(data)
        if not isinstance(source, ssl.SSLSocket) or not source.pending():
            return True
