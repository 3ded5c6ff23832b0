"""The inbound FHIR API (hub.adapters.api) without a server: starlette's test client against the
app on the in-memory ledger. Hostile requests (hub-namespace headers, request ids that are not
UUIDs, the wrong media type, JSON nested too deep, another service's referral) get a 4xx
OperationOutcome, and arbitrary bytes and headers never a 5xx."""

from __future__ import annotations

import io
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from hub.adapters.inbound.api import build_app
from hub.adapters.memory.ledger import MemoryLedger
from hub.log import configure_logging
from hub.messages import OutcomeStatus, Recipient
from hub.records import AlertFacts, ReferralRecord
from hub.security.inbound_auth import InboundCredentials, token_digest
from hub.transforms.response_to_outcome import build_service_response

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
SERVICES = {"wy-ld": "RXX01", "leeds-dat": "RXX03"}
TOKENS = {name: secrets.token_urlsafe(32) for name in SERVICES}


@dataclass
class ListPublisher:
    published: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, **message: Any) -> None:
        self.published.append(message)


@dataclass
class Api:
    client: TestClient
    publisher: ListPublisher
    bundle_id: str
    alert_id: str


@pytest.fixture(scope="module")
def api() -> Api:
    ledger = MemoryLedger()
    alert_id, bundle_id = str(uuid.uuid4()), str(uuid.uuid4())
    ledger.record_alert(
        AlertFacts(
            alert_id=alert_id,
            body_sha256="a" * 64,
            source_kind="custody",
            organisation_code="WYP",
            reference="WY-26-000001",
            pathway="adult",
            urgency="urgent",
            consent_status="given",
            share_with_justice=True,
            received_at=T0,
        )
    )
    referral = ReferralRecord(bundle_id, alert_id, "wy-ld", request_id=str(uuid.uuid4()))
    ledger.mark_routed(alert_id, rule="default", referrals=[referral], at=T0)
    publisher = ListPublisher()
    app = build_app(
        ledger=ledger,  # type: ignore[arg-type]
        publisher=publisher,
        recipients={n: Recipient(n, ods, f"{n} service") for n, ods in SERVICES.items()},
        inbound={n: InboundCredentials(token_sha256=token_digest(t)) for n, t in TOKENS.items()},
        max_body_bytes=100_000,
    )
    return Api(TestClient(app, raise_server_exceptions=False), publisher, bundle_id, alert_id)


def response_body(bundle_id: str, endpoint: str = "wy-ld") -> bytes:
    message = build_service_response(
        referral_bundle_id=bundle_id,
        service_ods=SERVICES[endpoint],
        service_name=f"{endpoint} service",
        status=OutcomeStatus.ACCEPTED,
        at=T0,
        message_id=str(uuid.uuid4()),
    )
    return json.dumps(message).encode()


def headers(
    endpoint: str | None = "wy-ld", content_type: str = "application/fhir+json", **extra: str
) -> dict[str, str]:
    found = {
        "Content-Type": content_type,
        "X-Request-Id": str(uuid.uuid4()),
        "X-Correlation-Id": str(uuid.uuid4()),
        **extra,
    }
    if endpoint:
        found["Authorization"] = f"Bearer {TOKENS[endpoint]}"
    return found


def post(api: Api, body: bytes, hdrs: dict[str, str]) -> Any:
    return api.client.post("/fhir/$process-message", content=body, headers=hdrs)


def code_of(response: Any) -> str:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return str(outcome["issue"][0]["details"]["coding"][0]["code"])


def test_the_right_service_is_accepted(api: Api) -> None:
    response = post(api, response_body(api.bundle_id), headers())

    assert response.status_code == 200, response.text


def test_another_services_referral_gets_the_answer_of_one_that_does_not_exist(api: Api) -> None:
    ids = {"X-Request-Id": str(uuid.uuid4()), "X-Correlation-Id": str(uuid.uuid4())}

    theirs = post(api, response_body(api.bundle_id, "leeds-dat"), headers("leeds-dat", **ids))
    nobodys = post(api, response_body(str(uuid.uuid4()), "leeds-dat"), headers("leeds-dat", **ids))

    assert theirs.status_code == nobodys.status_code == 404
    assert theirs.content == nobodys.content
    assert dict(theirs.headers) == dict(nobodys.headers)


def test_a_request_id_that_is_not_a_uuid_is_refused_unechoed_and_unlogged(api: Api) -> None:
    huge = "r" * 60_000
    stream = io.StringIO()
    configure_logging(level="INFO", stream=stream)
    try:
        authenticated = post(api, response_body(api.bundle_id), headers(**{"X-Request-Id": huge}))
        stranger = post(api, b"{}", headers(None, **{"X-Request-Id": "abc\x1b[2J"}))
        bad_correlation = post(
            api, response_body(api.bundle_id), headers(**{"X-Correlation-Id": "not-a-uuid"})
        )
    finally:
        configure_logging(level="INFO")

    for response in (authenticated, stranger, bad_correlation):
        assert response.status_code == 400
        assert code_of(response) == "REC_BAD_REQUEST"
        assert "x-request-id" not in response.headers
    assert huge not in stream.getvalue() and "rrrrrrrrrr" not in stream.getvalue()


def test_a_body_that_is_not_fhir_json_is_refused_with_415(api: Api) -> None:
    for content_type in ("text/plain", "application/xml", "application/x-www-form-urlencoded"):
        response = post(api, response_body(api.bundle_id), headers(content_type=content_type))

        assert response.status_code == 415, content_type
        assert code_of(response) == "REC_UNSUPPORTED_MEDIA_TYPE"
    plain_json = post(
        api, response_body(api.bundle_id), headers(content_type="application/json; charset=utf-8")
    )
    assert plain_json.status_code == 200


def test_deeply_nested_json_is_answered_400_with_an_operation_outcome(api: Api) -> None:
    for depth in (100, 5_000, 50_000):
        body = b"[" * depth + b"]" * depth

        response = post(api, body, headers())

        assert response.status_code == 400, depth
        assert code_of(response) == "REC_BAD_REQUEST"


def test_headers_in_the_hubs_namespace_are_refused_before_anything_reads_them(api: Api) -> None:
    before = len(api.publisher.published)

    for name in ("X-Hub-Alert-Id", "x-hub-stage", "X-HUB-ATTEMPTS"):
        response = post(api, response_body(api.bundle_id), headers(**{name: str(uuid.uuid4())}))

        assert response.status_code == 400, name
        assert code_of(response) == "REC_BAD_REQUEST"
    assert len(api.publisher.published) == before


header_names = st.one_of(
    st.sampled_from(
        [
            "Content-Type",
            "Content-Length",
            "X-Request-Id",
            "X-Correlation-Id",
            "Authorization",
            "X-Hub-Stage",
            "Transfer-Encoding",
        ]
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=20),
)
header_values = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
bodies = st.one_of(
    st.binary(max_size=2000),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=30,
    ).map(lambda d: json.dumps(d).encode()),
    st.integers(min_value=1, max_value=3000).map(lambda n: b"[" * n + b"]" * n),
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=bodies,
    extra=st.dictionaries(header_names, header_values, max_size=4),
    authenticated=st.booleans(),
)
def test_arbitrary_bytes_and_headers_never_get_a_5xx(
    api: Api, body: bytes, extra: dict[str, str], authenticated: bool
) -> None:
    hdrs = headers("wy-ld" if authenticated else None)
    for name, value in extra.items():
        hdrs = {k: v for k, v in hdrs.items() if k.lower() != name.lower()}
        hdrs[name] = value

    response = post(api, body, hdrs)

    assert response.status_code < 500, response.text
