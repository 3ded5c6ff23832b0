"""MLLP delivery against hl7apy's own MLLPServer: a receiver that parses every REF^I12 at
validation level STRICT, then answers AA, AE or AR, hangs up, or never answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.mllp import AbstractHandler, MLLPServer
from hl7apy.parser import parse_message

from hub.adapters.mllp import MllpClient, deliver_ref_i12
from hub.contracts.alert import parse_alert
from hub.errors import PermanentError, TransientError
from hub.messages import HubIdentity, Recipient
from hub.transforms.referral_ids import referral_ids
from hub.transforms.referral_to_ref_i12 import AckStatus, control_id_for, render_ref_i12
from tests.fixtures.alerts import DEFAULT_SENT_AT, REMOVE, court_alert, custody_alert, to_body
from tests.fixtures.ids import ID_KEY

pytestmark = pytest.mark.integration

HUB = HubIdentity(
    ods_code="X26HUB", name="L&D Hub", endpoint="https://ld-hub.example.nhs.uk/fhir", ids=ID_KEY
)
TRUST = Recipient(endpoint="wy-ld", ods_code="RXX01", organisation_name="West Yorkshire L&D")
SENT_AT = datetime.fromisoformat(DEFAULT_SENT_AT.replace("Z", "+00:00"))
TIMEOUT = 2.0


@dataclass
class Receiver:
    """What the pretend trust does with each message, and what it saw."""

    answer: str  # AA | AE | AR | hang-up | silent | wrong-control-id
    received: list[Any] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class RefI12Handler(AbstractHandler):
    def __init__(self, message: str, receiver: Receiver) -> None:
        super().__init__(message)
        self.receiver = receiver

    def reply(self) -> str:
        # STRICT parse and validate: a message hl7apy would refuse never gets an ACK here.
        incoming = parse_message(self.incoming_message, validation_level=VALIDATION_LEVEL.STRICT)
        incoming.validate()
        self.receiver.received.append(incoming)
        answer = self.receiver.answer
        if answer == "silent":
            self.receiver.release.wait(timeout=30)
        if answer in ("silent", "hang-up"):
            raise ConnectionAbortedError("the receiver gives no ACK")  # server closes the socket
        control_id = incoming.msh.msh_10.to_er7()
        if answer == "wrong-control-id":
            answer, control_id = "AA", "someone-else"
        return _ack(incoming, code=answer, control_id=control_id).to_mllp()


def _ack(incoming: Any, *, code: str, control_id: str) -> Message:
    ack = Message("ACK", version="2.5", validation_level=VALIDATION_LEVEL.STRICT)
    ack.msh.msh_3 = "TRUST_PAS"
    ack.msh.msh_4 = incoming.msh.msh_6.to_er7()
    ack.msh.msh_5 = incoming.msh.msh_3.to_er7()
    ack.msh.msh_6 = incoming.msh.msh_4.to_er7()
    ack.msh.msh_9 = "ACK^I12^ACK"
    ack.msh.msh_10 = "ACK-" + control_id[:16]
    ack.msh.msh_11 = "P"
    ack.msa.msa_1 = code
    ack.msa.msa_2 = control_id
    if code == "AE":
        ack.msa.msa_3 = "Patient index unavailable"
        err = ack.add_segment("ERR")
        err.err_3 = "207^Application internal error^HL70357"
        err.err_4 = "E"
    elif code == "AR":
        ack.msa.msa_3 = "Referral rejected"
        err = ack.add_segment("ERR")
        err.err_3 = "200^Unsupported message type^HL70357"
        err.err_4 = "E"
        err.err_8 = "REF not accepted on this interface"
    ack.validate()
    return ack


@pytest.fixture
def trust() -> Iterator[tuple[Receiver, int]]:
    """An MLLP receiver on a free port of its own; `receiver.answer` sets its behaviour."""
    receiver = Receiver(answer="AA")
    server = MLLPServer(
        "127.0.0.1", 0, {"REF^I12^REF_I12": (RefI12Handler, receiver)}, timeout=TIMEOUT * 5
    )
    port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield receiver, port
    receiver.release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def rendered(document: dict[str, Any]) -> tuple[str, str]:
    alert = parse_alert(to_body(document), content_type="application/json", now=SENT_AT)
    control_id = control_id_for(referral_ids(ID_KEY, alert.alert_id, TRUST.endpoint))
    message = render_ref_i12(alert, recipient=TRUST, hub=HUB, control_id=control_id)
    return message, control_id


def deliver(port: int, message: str, control_id: str, timeout: float = TIMEOUT) -> Any:
    return deliver_ref_i12(
        MllpClient(),
        host="127.0.0.1",
        port=port,
        message=message,
        control_id=control_id,
        timeout=timeout,
        alert_id="alert-under-test",
        endpoint=TRUST.endpoint,
    )


@pytest.mark.parametrize(
    "document",
    [
        custody_alert(),
        court_alert(pathway="youth", person={"nhs_number": REMOVE, "date_of_birth": "2010-05-01"}),
    ],
    ids=["custody-adult", "court-youth-no-nhs-number"],
)
def test_an_aa_ack_means_delivered_and_the_receiver_parsed_it_strictly(
    trust: tuple[Receiver, int], document: dict[str, Any]
) -> None:
    receiver, port = trust
    message, control_id = rendered(document)

    result = deliver(port, message, control_id)

    assert (result.status, result.code, result.control_id) == (
        AckStatus.ACCEPTED,
        "AA",
        control_id,
    )
    [received] = receiver.received
    assert received.name == "REF_I12"
    assert received.msh.msh_10.to_er7() == control_id
    assert received.to_er7() + "\r" == message


def test_an_ae_ack_is_transient_and_keeps_the_receivers_text(trust: tuple[Receiver, int]) -> None:
    receiver, port = trust
    receiver.answer = "AE"
    message, control_id = rendered(custody_alert())

    with pytest.raises(TransientError) as caught:
        deliver(port, message, control_id)

    assert "AE" in caught.value.message
    assert "Patient index unavailable" in caught.value.message
    assert "207 Application internal error" in caught.value.message
    assert (caught.value.alert_id, caught.value.endpoint) == ("alert-under-test", "wy-ld")


def test_an_ar_ack_is_permanent_and_keeps_msa_and_err_text(trust: tuple[Receiver, int]) -> None:
    receiver, port = trust
    receiver.answer = "AR"
    message, control_id = rendered(custody_alert())

    with pytest.raises(PermanentError) as caught:
        deliver(port, message, control_id)

    assert caught.value.operation_outcome == (
        "Referral rejected; 200 Unsupported message type; REF not accepted on this interface"
    )
    assert "AR" in caught.value.message


def test_a_receiver_that_never_answers_is_a_transient_timeout(
    trust: tuple[Receiver, int],
) -> None:
    receiver, port = trust
    receiver.answer = "silent"
    message, control_id = rendered(custody_alert())

    with pytest.raises(TransientError, match=r"no ACK .* within 0.5s"):
        deliver(port, message, control_id, timeout=0.5)

    assert len(receiver.received) == 1  # it arrived; only the ACK is missing


def test_a_receiver_that_hangs_up_without_an_ack_is_transient(
    trust: tuple[Receiver, int],
) -> None:
    receiver, port = trust
    receiver.answer = "hang-up"
    message, control_id = rendered(custody_alert())

    with pytest.raises(TransientError, match="closed the connection|failed"):
        deliver(port, message, control_id)


def test_an_ack_for_another_message_is_transient(trust: tuple[Receiver, int]) -> None:
    receiver, port = trust
    receiver.answer = "wrong-control-id"
    message, control_id = rendered(custody_alert())

    with pytest.raises(TransientError, match="someone-else"):
        deliver(port, message, control_id)


def test_a_refused_connection_is_transient() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = int(unused.getsockname()[1])  # bound, never listening: connections are refused
        message, control_id = rendered(custody_alert())

        with pytest.raises(TransientError, match="ConnectionRefusedError") as caught:
            deliver(port, message, control_id)

    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_a_resend_is_the_same_message_with_the_same_control_id(
    trust: tuple[Receiver, int],
) -> None:
    receiver, port = trust
    document = custody_alert()
    first, control_id = rendered(document)
    second, same_control_id = rendered(document)

    deliver(port, first, control_id)
    deliver(port, second, same_control_id)

    assert first == second and control_id == same_control_id
    assert [m.msh.msh_10.to_er7() for m in receiver.received] == [control_id, control_id]
