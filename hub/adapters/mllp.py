"""HL7 v2 over MLLP: frame one message, send it, read the framed ACK, judge the answer.

The only module that opens MLLP sockets. Connection refused/reset, a peer that hangs up and a
timeout become TransientError here (chained `from exc`). `deliver_ref_i12` is the one place an
MLLP answer is judged:

| answer                                                   | verdict                          |
|----------------------------------------------------------|----------------------------------|
| MSA-1 AA (or enhanced-mode CA) for the MSH-10 sent       | delivered: the AckResult returns |
| MSA-1 AE / CE (receiver error)                           | TransientError, MSA/ERR text kept|
| MSA-1 AR / CR (receiver rejects the message)             | PermanentError, MSA/ERR text in  |
|                                                          | `operation_outcome`              |
| no ACK: refused, reset, closed early, timeout            | TransientError                   |
| an unreadable ACK, or one answering another MSH-10       | TransientError                   |

Framing (HL7 v2.5.1 Appendix C, the Minimal Lower Layer Protocol): 0x0B, the message, 0x1C 0x0D.
One connection per message: hl7apy's MLLPServer, like many interface engines, closes after one
ACK. A resend is the same message with the same MSH-10, so the receiver can spot duplicates.
"""

from __future__ import annotations

import socket
import time
from typing import Protocol

from hub.endpoints.delivered import _check_rendered_for
from hub.endpoints.hl7v2_mllp import HL7V2_CONTENT_TYPE, HL7V2_ENCODING
from hub.errors import PermanentError, TransientError
from hub.records import Delivered, DeliveryJob
from hub.transforms.referral_to_ref_i12 import (
    AckResult,
    AckStatus,
    UnreadableAck,
    control_id_from_request_id,
    parse_ack,
)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c"
CARRIAGE_RETURN = b"\x0d"
MAX_ACK_BYTES = 1 << 20  # an ACK is a few hundred bytes; more means the peer is not speaking MLLP


class MllpSender(Protocol):
    """Sends one HL7 v2 message and returns the peer's unframed answer; raises TransientError
    when there is none (refused, reset, closed, timed out)."""

    def send(self, host: str, port: int, message: str, *, timeout: float) -> str: ...


def frame(message: str, *, encoding: str = "utf-8") -> bytes:
    payload = message.encode(encoding)
    if START_BLOCK in payload or END_BLOCK in payload:
        raise ValueError("an HL7 message may not contain the MLLP block characters 0x0B or 0x1C")
    return START_BLOCK + payload + END_BLOCK + CARRIAGE_RETURN


class MllpClient:
    """MllpSender over a plain TCP socket. Stateless, so one instance serves every thread."""

    def __init__(self, *, encoding: str = "utf-8", max_ack_bytes: int = MAX_ACK_BYTES) -> None:
        self._encoding = encoding  # matches MSH-18 UNICODE UTF-8 of the rendered REF^I12
        self._max_ack_bytes = max_ack_bytes

    def send(self, host: str, port: int, message: str, *, timeout: float) -> str:
        """Send `message` framed and return the ACK unframed. `timeout` bounds the whole
        exchange: connect, send and the wait for the ACK."""
        where = f"{host}:{port}"
        data = frame(message, encoding=self._encoding)
        deadline = time.monotonic() + timeout
        try:
            with socket.create_connection((host, port), timeout=timeout) as sock:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                sock.sendall(data)
                return self._read_ack(sock, deadline, where)
        except TimeoutError as exc:
            raise TransientError(
                f"no ACK from {where} within {timeout:g}s", endpoint=where
            ) from exc
        except OSError as exc:
            raise TransientError(
                f"MLLP connection to {where} failed: {type(exc).__name__}: {exc}", endpoint=where
            ) from exc

    def _read_ack(self, sock: socket.socket, deadline: float, where: str) -> str:
        buffer = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = sock.recv(4096)
            if not chunk:
                raise TransientError(
                    f"{where} closed the connection before a complete ACK", endpoint=where
                )
            buffer += chunk
            start = buffer.find(START_BLOCK)
            if start != -1:
                end = buffer.find(END_BLOCK + CARRIAGE_RETURN, start + 1)
                if end != -1:
                    return buffer[start + 1 : end].decode(self._encoding, errors="replace")
            if len(buffer) > self._max_ack_bytes:
                raise TransientError(
                    f"{where} sent {len(buffer)} bytes without a complete MLLP frame",
                    endpoint=where,
                )


def deliver_ref_i12(
    client: MllpSender,
    *,
    host: str,
    port: int,
    message: str,
    control_id: str,
    timeout: float,
    alert_id: str | None = None,
    endpoint: str | None = None,
) -> AckResult:
    """Send one rendered REF^I12 and judge the ACK (table in the module docstring).

    Returns the accepted AckResult; raises TransientError (retry later) or PermanentError
    (dead-letter), each with the receiver's MSA/ERR text.
    """
    endpoint = endpoint or f"{host}:{port}"

    def transient(reason: str) -> TransientError:
        return TransientError(reason, alert_id=alert_id, stage="deliver", endpoint=endpoint)

    try:
        answer = client.send(host, port, message, timeout=timeout)
    except TransientError as exc:
        # Add this delivery's context and let it go on, chained to the socket error.
        exc.alert_id, exc.stage, exc.endpoint = alert_id, "deliver", endpoint
        raise
    try:
        ack = parse_ack(answer)
    except UnreadableAck as exc:
        raise transient(f"unreadable ACK: {exc}") from exc
    if ack.control_id != control_id:
        raise transient(f"ACK answers MSH-10 {ack.control_id[:20]!r}, not the {control_id!r} sent")
    detail = f": {ack.text}" if ack.text else ""
    if ack.status is AckStatus.ERROR:
        raise transient(f"receiver answered {ack.code}{detail}")
    if ack.status is AckStatus.REJECTED:
        raise PermanentError(
            f"receiver rejected the message ({ack.code}){detail}",
            operation_outcome=ack.text or ack.code,
            alert_id=alert_id,
            stage="deliver",
            endpoint=endpoint,
        )
    return ack


class Hl7v2MllpSender:
    """hl7v2-mllp: the REF^I12 intake rendered, sent over MLLP; the ACK judged by
    deliver_ref_i12 (AA delivered, AE or no ACK transient, AR permanent)."""

    def __init__(self, *, host: str, port: int, timeout_seconds: float, client: MllpSender) -> None:
        self.host = host
        self.port = port
        self.timeout_seconds = timeout_seconds
        self.client = client

    def send(self, job: DeliveryJob) -> Delivered:
        _check_rendered_for(job, HL7V2_CONTENT_TYPE, "hl7v2-mllp")
        referral = job.referral
        started = time.perf_counter()
        ack = deliver_ref_i12(
            self.client,
            host=self.host,
            port=self.port,
            message=job.body.decode(HL7V2_ENCODING),
            control_id=control_id_from_request_id(referral.request_id),
            timeout=self.timeout_seconds,
            alert_id=referral.alert_id,
            endpoint=referral.endpoint,
        )
        return Delivered(
            answer=f"ACK {ack.code}",
            status=None,
            elapsed_ms=(time.perf_counter() - started) * 1000,
        )
