"""MESH delivery against NHS England's mesh-sandbox: the hub's mailbox X26ABC1 sends to the
pretend trust's X26ABC2, which lists, downloads and acknowledges, with the sandbox checking
every NHSMESH HMAC header (AUTH_MODE=full). A stub server stands in for a MESH that is busy
or broken, answers the sandbox cannot be made to give.

The sandbox runs as `uvicorn mesh_sandbox.api:app` from this interpreter over plain http; if it
cannot start the fixture fails with its log, never skips.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from hub.adapters.mesh import MeshInboxReader, MeshSender
from hub.errors import PermanentError, TransientError
from tests.mesh_sandbox import (
    HUB_MAILBOX,
    PASSWORD,
    SHARED_KEY,
    TRUST_MAILBOX,
    WORKFLOW,
    Sandbox,
    start_sandbox,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    running = start_sandbox(tmp_path_factory.mktemp("mesh"))
    yield running
    running.stop()


def _sender(url: str, *, recipient: str = TRUST_MAILBOX, **options: object) -> MeshSender:
    return MeshSender(
        url,
        HUB_MAILBOX,
        str(options.pop("password", PASSWORD)),
        str(options.pop("shared_key", SHARED_KEY)),
        recipient_mailbox=recipient,
        workflow_id=WORKFLOW,
        timeout=5.0,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def hub_mailbox(sandbox: Sandbox) -> Iterator[MeshSender]:
    with _sender(sandbox.url) as sender:
        yield sender


@pytest.fixture
def trust_mailbox(sandbox: Sandbox) -> Iterator[MeshInboxReader]:
    with MeshInboxReader(sandbox.url, TRUST_MAILBOX, PASSWORD, SHARED_KEY, timeout=5.0) as reader:
        yield reader


def _referral_bytes(request_id: str) -> bytes:
    # Exact bytes matter: non-ASCII, a CRLF and no trailing newline must all survive the trip.
    bundle = {"resourceType": "Bundle", "id": request_id, "note": "Zoë O'Brien\r\nline two"}
    return json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _send_referral(sender: MeshSender) -> tuple[str, str, bytes]:
    request_id = str(uuid.uuid4())
    body = _referral_bytes(request_id)
    message_id = sender.send(
        body, local_id=request_id, subject="L&D referral", filename=f"{request_id}.json"
    )
    return message_id, request_id, body


def test_referral_arrives_in_the_trust_inbox_with_our_local_id_and_exact_bytes(
    hub_mailbox: MeshSender, trust_mailbox: MeshInboxReader
) -> None:
    # given a referral sent from the hub's mailbox
    message_id, request_id, body = _send_referral(hub_mailbox)

    # when the trust lists and downloads its inbox
    waiting = trust_mailbox.list_ids()
    received = trust_mailbox.read(message_id)

    # then it is there, byte for byte, carrying our X-Request-Id as the MESH local id
    assert message_id in waiting
    assert received.body == body
    assert received.local_id == request_id
    assert received.sender == HUB_MAILBOX
    assert received.workflow_id == WORKFLOW
    assert received.subject == "L&D referral"
    assert received.filename == f"{request_id}.json"


def test_an_acknowledged_referral_leaves_the_inbox_and_tracks_as_acknowledged(
    hub_mailbox: MeshSender, trust_mailbox: MeshInboxReader
) -> None:
    # given a referral waiting in the trust's inbox, tracked as accepted by MESH
    message_id, _, body = _send_referral(hub_mailbox)
    assert hub_mailbox.track(message_id) == "accepted"
    assert trust_mailbox.read(message_id).body == body

    # when the trust acknowledges it
    trust_mailbox.acknowledge(message_id)

    # then it is no longer listed and the hub's tracking sees the acknowledgement
    assert message_id not in trust_mailbox.list_ids()
    assert hub_mailbox.track(message_id) == "acknowledged"


def test_each_send_is_a_new_message_because_mesh_does_not_deduplicate(
    hub_mailbox: MeshSender, trust_mailbox: MeshInboxReader
) -> None:
    # given one referral sent twice with the same local id (what a blind resend would do)
    request_id = str(uuid.uuid4())
    body = _referral_bytes(request_id)
    first = hub_mailbox.send(body, local_id=request_id, subject="s", filename="r.json")
    second = hub_mailbox.send(body, local_id=request_id, subject="s", filename="r.json")

    # then MESH holds two messages; only the local id ties them together (why the ledger is
    # checked before sending)
    assert first != second
    assert {trust_mailbox.read(m).local_id for m in (first, second)} == {request_id}
    for message_id in (first, second):
        trust_mailbox.acknowledge(message_id)


def test_an_unknown_recipient_mailbox_is_a_permanent_error_in_meshs_words(
    sandbox: Sandbox,
) -> None:
    with (
        _sender(sandbox.url, recipient="X26NOPE9") as sender,
        pytest.raises(PermanentError) as caught,
    ):
        _send_referral(sender)
    assert "Unregistered to address" in caught.value.message
    assert caught.value.operation_outcome and "Unregistered to address" in (
        caught.value.operation_outcome
    )
    assert caught.value.endpoint == "mesh:X26NOPE9"
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    "credentials",
    [{"password": "not-the-password"}, {"shared_key": "not-the-shared-key"}],
    ids=["wrong-password", "wrong-shared-key"],
)
def test_bad_credentials_are_refused_as_a_permanent_error(
    sandbox: Sandbox, credentials: dict[str, str]
) -> None:
    with _sender(sandbox.url, **credentials) as sender, pytest.raises(PermanentError) as caught:
        _send_referral(sender)
    assert "Invalid Authentication Token" in caught.value.message


def test_tracking_an_unknown_message_is_a_permanent_error_with_status_404(
    hub_mailbox: MeshSender,
) -> None:
    with pytest.raises(PermanentError) as caught:
        hub_mailbox.track("0" * 32)
    assert caught.value.status == 404


def test_a_stopped_mesh_is_a_transient_error(tmp_path: Path) -> None:
    # given a sandbox that took one referral and then stopped
    own = start_sandbox(tmp_path)
    try:
        with _sender(own.url) as sender:
            message_id, _, _ = _send_referral(sender)
            own.stop()

            # when the hub sends or tracks, then it is told to retry later
            with pytest.raises(TransientError) as on_send:
                _send_referral(sender)
            with pytest.raises(TransientError):
                sender.track(message_id)
    finally:
        own.stop()
    assert on_send.value.endpoint == f"mesh:{TRUST_MAILBOX}"
    assert on_send.value.__cause__ is not None


# A MESH that is busy or broken: answers the sandbox cannot be made to give.


@dataclass
class Canned:
    status: int
    body: bytes
    content_type: str = "application/vnd.mesh.v2+json"


@pytest.fixture
def stub_mesh() -> Iterator[tuple[str, list[Canned]]]:
    answers: list[Canned] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            canned = answers[0]
            self.send_response(canned.status)
            self.send_header("Content-Type", canned.content_type)
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            self.wfile.write(canned.body)

        do_GET = do_POST = do_PUT = _answer

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answers
    server.shutdown()
    server.server_close()


MESH_ERROR = json.dumps({"detail": [{"event": "SEND", "code": "99", "msg": "busy"}]}).encode()


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_busy_or_failing_mesh_is_a_transient_error(
    stub_mesh: tuple[str, list[Canned]], status: int
) -> None:
    url, answers = stub_mesh
    answers.append(Canned(status, MESH_ERROR))
    with _sender(url, max_retries=0) as sender:
        with pytest.raises(TransientError):
            _send_referral(sender)
        with pytest.raises(TransientError):
            sender.track("0" * 32)


def test_an_answer_that_is_not_mesh_json_is_a_transient_error(
    stub_mesh: tuple[str, list[Canned]],
) -> None:
    url, answers = stub_mesh
    answers.append(Canned(202, b"<html>proxy says hello</html>", content_type="text/html"))
    with _sender(url) as sender, pytest.raises(TransientError):
        _send_referral(sender)


def test_a_client_error_from_mesh_is_permanent_and_keeps_meshs_words(
    stub_mesh: tuple[str, list[Canned]],
) -> None:
    url, answers = stub_mesh
    refusal = {"detail": [{"event": "SEND", "code": "06", "msg": "Unknown workflow"}]}
    answers.append(Canned(400, json.dumps(refusal).encode()))
    with _sender(url) as sender, pytest.raises(PermanentError) as caught:
        _send_referral(sender)
    assert "Unknown workflow" in caught.value.message
