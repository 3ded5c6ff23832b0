"""A scripted hub.ports.Sender for tests and the demo: each call takes the next scripted answer
(delivered, transient with or without Retry-After, permanent with what the peer said) and records
the job it was given, its exact bytes and X-Request-Id.

No I/O. tests/integration/test_sender_contract.py holds it to FhirRestSender talking to the
FakeTrust: the same job and the same answer give the same verdict from both.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from hub.errors import PermanentError, TransientError
from hub.records import Delivered, DeliveryJob


class Outcome(StrEnum):
    DELIVERED = "delivered"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the endpoint says to one attempt. `status` None: the peer does not speak HTTP, or
    (transient) it never answered (connection refused, timeout)."""

    outcome: Outcome
    status: int | None = None
    retry_after: float | None = None
    operation_outcome: str | None = None  # permanent: the peer's OperationOutcome, as text

    @classmethod
    def delivered(cls, status: int | None = 200) -> Answer:
        return cls(Outcome.DELIVERED, status)

    @classmethod
    def transient(cls, status: int | None = 503, *, retry_after: float | None = None) -> Answer:
        return cls(Outcome.TRANSIENT, status, retry_after=retry_after)

    @classmethod
    def unreachable(cls) -> Answer:
        """Connection refused or no answer in time: transient, with no status."""
        return cls(Outcome.TRANSIENT, None)

    @classmethod
    def permanent(cls, status: int | None = 422, *, operation_outcome: str | None = None) -> Answer:
        return cls(Outcome.PERMANENT, status, operation_outcome=operation_outcome)

    def reason(self) -> str:
        said = f"HTTP {self.status}" if self.status is not None else "no answer"
        return said + (f": {self.operation_outcome}" if self.operation_outcome else "")


@dataclass(frozen=True, slots=True)
class Sent:
    """One attempt as the endpoint received it, and what it was answered."""

    job: DeliveryJob
    body: bytes
    request_id: str  # the X-Request-Id an HTTP kind sends: the referral's, the same every retry
    bundle_id: str
    answer: Answer


class FakeSender:
    """hub.ports.Sender answering from a script; thread-safe by a lock.

    `answers` are used one per call, in order; once they run out every call gets `then`.
    `content_type`: when given, a job rendered for another kind is refused with PermanentError,
    as every real Sender refuses it (hub.endpoints), and is recorded with that answer."""

    def __init__(
        self,
        answers: Iterable[Answer] = (),
        *,
        then: Answer | None = None,
        content_type: str | None = None,
    ) -> None:
        self._script: deque[Answer] = deque(answers)
        self._then = then or Answer.delivered()
        self._content_type = content_type
        self._lock = threading.Lock()
        self._sent: list[Sent] = []

    def script(self, *answers: Answer) -> None:
        """Queue more answers after the ones not yet used."""
        with self._lock:
            self._script.extend(answers)

    def send(self, job: DeliveryJob) -> Delivered:
        referral = job.referral
        wrong_kind = self._wrong_kind(job)
        with self._lock:
            if wrong_kind:
                answer = Answer.permanent(None)
            else:
                answer = self._script.popleft() if self._script else self._then
            self._sent.append(
                Sent(job, bytes(job.body), referral.request_id, referral.bundle_id, answer)
            )
        if wrong_kind:
            raise PermanentError(
                f"delivery job holds {job.content_type}, not what this endpoint sends "
                f"({self._content_type}): re-send the alert"
            )
        if answer.outcome is Outcome.DELIVERED:
            return Delivered(answer=answer.reason(), status=answer.status, elapsed_ms=0.0)
        if answer.outcome is Outcome.TRANSIENT:
            raise TransientError(
                answer.reason(), retry_after=answer.retry_after, status=answer.status
            )
        raise PermanentError(
            answer.reason(), operation_outcome=answer.operation_outcome, status=answer.status
        )

    def _wrong_kind(self, job: DeliveryJob) -> bool:
        if self._content_type is None or not job.content_type:
            return False
        return job.content_type.split(";")[0] != self._content_type.split(";")[0]

    # -- reading back ------------------------------------------------------------------------

    @property
    def sent(self) -> list[Sent]:
        """Every attempt, in order (a copy)."""
        with self._lock:
            return list(self._sent)

    def bodies(self) -> list[bytes]:
        return [s.body for s in self.sent]

    def request_ids(self) -> list[str]:
        return [s.request_id for s in self.sent]

    @property
    def remaining(self) -> int:
        """Scripted answers not yet used."""
        with self._lock:
            return len(self._script)
