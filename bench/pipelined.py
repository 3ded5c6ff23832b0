"""Publisher confirms kept in flight with py-amqp: a pipelined publisher and a pipelined raw
hop (consume, republish on a confirmed channel, ack once the republish is confirmed).

The benchmark's measure of what the broker itself can do, and its way of filling a backlog
fast. py-amqp's `confirm_select` puts a channel in confirm mode; the broker's confirms arrive
as `basic_ack` / `basic_nack` events (delivery tag = the publish's sequence number on that
channel, `multiple` = every earlier one too) while `drain_events` reads the socket.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp

WINDOW = 200  # confirms kept in flight


def connect(url: str) -> amqp.Connection:
    """A py-amqp connection from an amqp://user:pass@host:port/vhost URL."""
    parts = urlsplit(url)
    conn = amqp.Connection(
        host=f"{parts.hostname or '127.0.0.1'}:{parts.port or 5672}",
        userid=unquote(parts.username or "guest"),
        password=unquote(parts.password or "guest"),
        virtual_host=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
        heartbeat=0,
    )
    conn.connect()
    return conn


class Confirms:
    """Tracks the publishes of one confirm-mode channel by sequence number."""

    def __init__(self, channel: Any, on_confirmed: Callable[[int, bool], None]) -> None:
        self.next_seq = 1
        self.outstanding: dict[int, None] = {}  # in publish order
        self.nacked = 0
        self._on_confirmed = on_confirmed
        channel.confirm_select()
        channel.events["basic_ack"].add(lambda tag, multiple: self._settle(tag, multiple, True))
        channel.events["basic_nack"].add(lambda tag, multiple: self._settle(tag, multiple, False))

    def sent(self) -> int:
        seq = self.next_seq
        self.next_seq += 1
        self.outstanding[seq] = None
        return seq

    def _settle(self, tag: int, multiple: bool, ok: bool) -> None:
        tags = [t for t in self.outstanding if t <= tag] if multiple else [tag]
        for t in tags:
            if t in self.outstanding:
                del self.outstanding[t]
                if not ok:
                    self.nacked += 1
                self._on_confirmed(t, ok)


def publish_pipelined(
    url: str,
    messages: list[tuple[str, bytes]],
    *,
    exchange: str,
    routing_key: str,
    stamps: dict[str, int],
    headers: Callable[[int], dict[str, Any]] | None = None,
    window: int = WINDOW,
) -> float:
    """Publish every message persistent, keeping up to `window` confirms in flight; returns
    the seconds until the last one was confirmed. Records time.time_ns() just before each
    publish in `stamps`. Raises if the broker nacked any."""
    conn = connect(url)
    try:
        ch = conn.channel()
        confirms = Confirms(ch, lambda _seq, _ok: None)
        started = time.perf_counter()
        for message_id, body in messages:
            while len(confirms.outstanding) >= window:
                conn.drain_events(timeout=30)
            now = time.time_ns()
            stamps[message_id] = now
            ch.basic_publish(
                amqp.Message(
                    body,
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=message_id,
                    application_headers=headers(now) if headers else None,
                ),
                exchange=exchange,
                routing_key=routing_key,
            )
            confirms.sent()
        while confirms.outstanding:
            conn.drain_events(timeout=30)
        seconds = time.perf_counter() - started
        if confirms.nacked:
            raise RuntimeError(f"broker nacked {confirms.nacked} of {len(messages)} publishes")
        return seconds
    finally:
        conn.close()


@dataclass
class HopResult:
    done: dict[str, int] = field(default_factory=dict)  # message_id -> republish confirmed, ns
    latencies_ms: list[float] = field(default_factory=list)
    nacked: int = 0


def pipelined_hop(
    url: str,
    *,
    queue_in: str,
    queue_out: str,
    n: int,
    published_header: str,
    ready: Callable[[], None],
    window: int = WINDOW,
    timeout: float = 120.0,
) -> HopResult:
    """Consume `n` messages from `queue_in`, republish each to `queue_out` on a confirmed
    channel with up to `window` confirms in flight, and ack consumed messages (multiple=True)
    only up to the highest delivery tag below which every republish is confirmed: no message
    is acked before its copy is durable. A nacked republish is nacked back (requeued)."""
    result = HopResult()
    conn = connect(url)
    try:
        cch, pch = conn.channel(), conn.channel()
        cch.basic_qos(prefetch_size=0, prefetch_count=window, a_global=False)
        # Confirms may settle out of order, so the ack goes by delivery tag: up to the highest
        # tag below which every consumed message is settled.
        republished: dict[int, tuple[int, str, int]] = {}  # seq -> (tag, message_id, sent ns)
        settled: set[int] = set()  # delivery tags confirmed (or nacked back), not yet acked
        acked = 0  # every delivery tag up to this one is acked

        def on_confirmed(seq: int, ok: bool) -> None:
            nonlocal acked
            tag, message_id, published = republished.pop(seq)
            if ok:
                now = time.time_ns()
                result.done[message_id] = now
                result.latencies_ms.append((now - published) / 1e6)
            else:
                result.nacked += 1
                cch.basic_nack(tag, multiple=False, requeue=True)
            settled.add(tag)
            upto = acked
            while upto + 1 in settled:
                upto += 1
                settled.discard(upto)
            if upto > acked:
                cch.basic_ack(upto, multiple=True)
                acked = upto

        confirms = Confirms(pch, on_confirmed)

        # basic_publish itself reads the socket first (py-amqp drains events there to see a
        # connection.blocked), so a delivery can arrive inside it: deliveries are only queued
        # here, and republished from the loop below, in order, one publish at a time.
        inbox: deque[amqp.Message] = deque()
        cch.basic_consume(queue_in, callback=inbox.append)
        ready()
        deadline = time.monotonic() + timeout
        while len(result.done) < n and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                pass
            while inbox:
                msg = inbox.popleft()
                props = msg.properties
                app_headers = props.get("application_headers") or {}
                pch.basic_publish(
                    amqp.Message(
                        msg.body,
                        content_type=props.get("content_type"),
                        delivery_mode=2,
                        message_id=props.get("message_id"),
                        application_headers=app_headers,
                    ),
                    exchange="",
                    routing_key=queue_out,
                )
                republished[confirms.sent()] = (
                    msg.delivery_tag,
                    str(props.get("message_id")),
                    int(app_headers.get(published_header, 0)),
                )
        return result
    finally:
        conn.close()
