"""Authentication on the hub's `POST /fhir/$process-message`, end to end on the real broker and
database: a service proves who it is (its bearer token, or its client certificate over HTTPS)
and may report only on referrals it received; every refusal is a FHIR OperationOutcome, and
nothing refused reaches the justice side."""

from __future__ import annotations

import io
import json
import secrets
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.log import configure_logging
from hub.messages import OutcomeStatus
from hub.testing.fake_trust import HubCredentials, Received
from hub.transforms.response_to_outcome import build_service_response
from tests.conftest import SERVICES, HubRig, wait_until
from tests.e2e.test_alert_to_outcome import fresh_custody, key_for
from tests.pki import make_pki, openssl

pytestmark = pytest.mark.e2e

WY_SUBJECT = "CN=wy-ld.trust.example,O=West Yorkshire LD,C=GB"
DAT_SUBJECT = "CN=leeds-dat.trust.example,O=Leeds DAT,C=GB"


def delivered_referral(rig: HubRig) -> tuple[dict[str, Any], Received]:
    """A custody alert the test routes send to wy-ld only, once wy-ld has its referral."""
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))
    wait_until(lambda: len(rig.trust.delivered()) == 1, what="the referral at wy-ld")
    rig.justice.wait_for(lambda got: any(o["status"] == "received" for o in got))
    return alert, rig.trust.delivered()[0]


def response_to(referral: Received, *, endpoint: str = "wy-ld") -> bytes:
    ods, name = SERVICES[endpoint]
    message = build_service_response(
        referral_bundle_id=referral.bundle_id,
        service_ods=ods,
        service_name=name,
        status=OutcomeStatus.ACCEPTED,
        at=datetime.now(UTC),
        message_id=str(uuid.uuid4()),
    )
    return json.dumps(message).encode()


def post(
    rig: HubRig,
    body: bytes,
    *,
    alert: dict[str, Any],
    token: str | None = None,
    authorization: str | None = None,
    tls: ssl.SSLContext | None = None,
) -> httpx.Response:
    headers = {
        "Content-Type": "application/fhir+json",
        "X-Request-Id": str(uuid.uuid4()),
        "X-Correlation-Id": alert["alert_id"],
    }
    if token or authorization:
        headers["Authorization"] = authorization or f"Bearer {token}"
    scheme = "https" if tls else "http"
    url = f"{scheme}://127.0.0.1:{rig.api_port}/fhir/$process-message"
    return httpx.post(url, content=body, headers=headers, verify=tls or True, timeout=10)


def token_of(rig: HubRig, endpoint: str) -> str:
    token = rig.trust.credentials[endpoint].token
    assert token
    return token


def assert_refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    assert response.headers["x-request-id"] == response.request.headers["x-request-id"]
    outcome: dict[str, Any] = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["details"]["coding"][0]["code"] == code
    return outcome


def assert_only_received(rig: HubRig, alert: dict[str, Any], *, marker: bool = True) -> None:
    """Nothing but the hub's own `received` reached the justice side for this alert.

    The proof: wy-ld then sends an `assessed` with its own credentials; the outcome stage takes
    outcomes first in, first out, so by the time it reaches the justice side, any outcome let
    through before it has too. (`marker=False`: wy-ld has no credentials to send one.)"""
    if not marker:
        time.sleep(1.0)  # long enough for a queued outcome to come through the outcome stage
        assert {o["status"] for o in rig.justice.for_alert(alert["alert_id"])} == {"received"}
        return
    (referral,) = rig.trust.delivered()
    ods, name = SERVICES["wy-ld"]
    message = build_service_response(
        referral_bundle_id=referral.bundle_id,
        service_ods=ods,
        service_name=name,
        status=OutcomeStatus.ASSESSED,
        at=datetime.now(UTC),
        message_id=str(uuid.uuid4()),
    )
    assert rig.trust.post_to_hub(message, correlation_id=alert["alert_id"], endpoint="wy-ld") == 200
    rig.justice.wait_for(lambda got: any(o["status"] == "assessed" for o in got))
    statuses = [o["status"] for o in rig.justice.for_alert(alert["alert_id"])]
    assert statuses == ["received", "assessed"], statuses


# -- bearer tokens ------------------------------------------------------------------------


def test_an_outcome_without_credentials_is_refused_with_401_and_a_bearer_challenge(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(replies=None)
    alert, referral = delivered_referral(rig)

    response = post(rig, response_to(referral), alert=alert)

    outcome = assert_refused(response, 401, "REC_UNAUTHORIZED")
    assert outcome["issue"][0]["code"] == "login"
    assert response.headers["www-authenticate"] == 'Bearer realm="ld-hub"'
    assert_only_received(rig, alert)


def test_an_outcome_with_a_wrong_token_is_refused_with_401(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(replies=None)
    alert, referral = delivered_referral(rig)

    wrong = post(rig, response_to(referral), alert=alert, token=secrets.token_urlsafe(32))
    basic = post(rig, response_to(referral), alert=alert, authorization="Basic d3k6bGQ=")

    assert_refused(wrong, 401, "REC_UNAUTHORIZED")
    assert wrong.headers["www-authenticate"] == 'Bearer realm="ld-hub", error="invalid_token"'
    assert_refused(basic, 401, "REC_UNAUTHORIZED")
    assert 'error="invalid_request"' in basic.headers["www-authenticate"]
    assert_only_received(rig, alert)


def test_another_services_referral_looks_exactly_like_one_that_does_not_exist(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(replies=None)
    alert, referral = delivered_referral(rig)  # went to wy-ld
    dat = token_of(rig, "leeds-dat")

    # leeds-dat's own, valid token, on wy-ld's referral (its message even claims to be wy-ld)
    theirs = post(rig, response_to(referral), alert=alert, token=dat)
    nobodys = post(
        rig, response_to(replace(referral, bundle_id=str(uuid.uuid4()))), alert=alert, token=dat
    )

    outcome = assert_refused(theirs, 404, "REC_NOT_FOUND")
    assert outcome["issue"][0]["code"] == "not-found"
    assert (theirs.status_code, theirs.content) == (nobodys.status_code, nobodys.content)
    assert set(theirs.headers) == set(nobodys.headers)
    assert_only_received(rig, alert)


def test_an_outcome_with_the_right_token_reaches_the_justice_side(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(replies=None)
    alert, referral = delivered_referral(rig)

    response = post(rig, response_to(referral), alert=alert, token=token_of(rig, "wy-ld"))

    assert response.status_code == 200, response.text
    assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "OK"
    outcomes = rig.justice.wait_for(lambda got: any(o["status"] == "accepted" for o in got))
    accepted = next(o for o in outcomes if o["status"] == "accepted")
    assert accepted["alert_id"] == alert["alert_id"]


def test_the_pretend_trusts_own_replies_carry_each_services_token(rig: HubRig) -> None:
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))

    rig.justice.wait_for(lambda got: {o["status"] for o in got} >= {"accepted", "assessed"})
    assert rig.trust.reply_results == [200, 200]


def test_an_authenticated_service_naming_another_sender_is_refused_with_403(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(replies=None)
    alert, referral = delivered_referral(rig)

    # wy-ld's token, but the message's MessageHeader.sender is the DAT
    body = response_to(referral, endpoint="leeds-dat")
    response = post(rig, body, alert=alert, token=token_of(rig, "wy-ld"))

    assert_refused(response, 403, "REC_FORBIDDEN")
    assert_only_received(rig, alert)


def test_an_unauthenticated_request_is_refused_before_its_body_is_read(
    rig_factory: Callable[..., HubRig],
) -> None:
    rig = rig_factory(replies=None)
    alert = fresh_custody()

    too_big = post(rig, b"{" + b" " * 200_000 + b"}", alert=alert)
    not_json = post(rig, b"not even json", alert=alert)

    assert_refused(too_big, 401, "REC_UNAUTHORIZED")  # not 413: it was never read
    assert_refused(not_json, 401, "REC_UNAUTHORIZED")  # not 400


def test_an_endpoint_without_inbound_credentials_cannot_send_outcomes(
    rig_factory: Callable[..., HubRig],
) -> None:
    stream = io.StringIO()
    configure_logging(level="INFO", stream=stream)
    try:
        dat_only = {"leeds-dat": HubCredentials(token=secrets.token_urlsafe(32))}
        rig = rig_factory(replies=None, credentials=dat_only)  # wy-ld has no `inbound`
        alert, referral = delivered_referral(rig)

        anonymous = post(rig, response_to(referral), alert=alert)
        as_dat = post(rig, response_to(referral), alert=alert, token=token_of(rig, "leeds-dat"))
    finally:
        configure_logging(level="INFO")

    assert_refused(anonymous, 401, "REC_UNAUTHORIZED")
    assert_refused(as_dat, 404, "REC_NOT_FOUND")
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    warning = next(line for line in lines if line["event"] == "outcomes_refused_from_endpoints")
    assert warning["endpoints"] == ["leeds-yjh", "wy-ld"]
    assert_only_received(rig, alert, marker=False)


def test_tokens_never_reach_the_logs(rig_factory: Callable[..., HubRig]) -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", stream=stream)
    wrong = secrets.token_urlsafe(32)
    try:
        rig = rig_factory()  # the trust replies with wy-ld's token
        alert, referral = delivered_referral(rig)
        post(rig, response_to(referral), alert=alert, token=wrong)
        post(rig, response_to(referral), alert=alert, token=token_of(rig, "leeds-dat"))
        rig.justice.wait_for(lambda got: any(o["status"] == "assessed" for o in got))
    finally:
        configure_logging(level="INFO")
    logged = stream.getvalue()
    assert "outcome_unauthenticated" in logged and "outcome_from_other_service" in logged
    for secret in (wrong, *(c.token for c in rig.trust.credentials.values() if c.token)):
        assert secret not in logged


def test_hostile_requests_to_the_running_api_are_refused_with_operation_outcomes(
    rig_factory: Callable[..., HubRig],
) -> None:
    stream = io.StringIO()
    configure_logging(level="DEBUG", stream=stream)
    huge_id = "r" * 12_000
    try:
        rig = rig_factory(replies=None)
        alert, referral = delivered_referral(rig)
        body = response_to(referral)
        url = f"http://127.0.0.1:{rig.api_port}/fhir/$process-message"
        good = {
            "Content-Type": "application/fhir+json",
            "X-Request-Id": str(uuid.uuid4()),
            "X-Correlation-Id": alert["alert_id"],
            "Authorization": f"Bearer {token_of(rig, 'wy-ld')}",
        }

        def send(content: bytes = body, **changes: str) -> httpx.Response:
            return httpx.post(url, content=content, headers={**good, **changes}, timeout=10)

        long_id_stranger = send(**{"X-Request-Id": huge_id, "Authorization": ""})
        long_id = send(**{"X-Request-Id": huge_id})
        hub_header = send(**{"X-Hub-Alert-Id": alert["alert_id"]})
        plain_text = send(**{"Content-Type": "text/plain"})
        deep = send(b"[" * 30_000 + b"]" * 30_000)
    finally:
        configure_logging(level="INFO")

    for response, status in (
        (long_id_stranger, 400),
        (long_id, 400),
        (hub_header, 400),
        (plain_text, 415),
        (deep, 400),
    ):
        assert response.status_code == status, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert "x-request-id" not in long_id.headers
    assert "rrrrrrrrrrrrrrrr" not in stream.getvalue()
    assert_only_received(rig, alert)


# -- mutual TLS ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests.pki's CA, server and rogue certificates, plus a client certificate per service
    (subjects of several RDNs, as real ones have)."""
    d = make_pki(tmp_path_factory.mktemp("pki"))
    for name, subject in (("wy-ld", WY_SUBJECT), ("leeds-dat", DAT_SUBJECT)):
        openssl_subject = "/" + "/".join(reversed(subject.split(",")))  # /C=GB/O=…/CN=…
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-subj", openssl_subject, "-keyout", d / f"{name}.key",
                "-out", d / f"{name}.csr")  # fmt: skip
        openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem",
                "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "2",
                "-out", d / f"{name}.pem")  # fmt: skip
    return d


def client_tls(pki: Path, name: str | None) -> ssl.SSLContext:
    """Trusts the hub's certificate; presents `name`'s client certificate (None: none)."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if name:
        context.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
    return context


def mtls_rig(
    rig_factory: Callable[..., HubRig],
    pki: Path,
    *,
    require_client_cert: bool = False,
    replies: Any = None,
    wy_ld_token: str | None = None,
) -> HubRig:
    """The API over HTTPS; wy-ld and leeds-dat authenticate by their client certificates."""
    tls = (
        f"{{cert_file: {pki / 'server.pem'}, key_file: {pki / 'server.key'}, "
        f"client_ca_file: {pki / 'ca.pem'}, require_client_cert: {str(require_client_cert)}}}"
    )
    credentials = {
        name: HubCredentials(cert=(str(pki / f"{name}.pem"), str(pki / f"{name}.key")))
        for name in ("wy-ld", "leeds-dat")
    }
    wy_inbound = f"client_cert_subject: '{WY_SUBJECT}'"
    env = {}
    if wy_ld_token:
        wy_inbound += ", token_env: WY_LD_BOTH_TOKEN"
        env["WY_LD_BOTH_TOKEN"] = wy_ld_token
    return rig_factory(
        replies=replies,
        credentials=credentials,
        api_tls_yaml=tls,
        hub_ca=str(pki / "ca.pem"),
        env=env,
        endpoint_yaml={
            "wy-ld": f"inbound: {{{wy_inbound}}}",
            "leeds-dat": f"inbound: {{client_cert_subject: '{DAT_SUBJECT}'}}",
        },
    )


def test_over_https_a_service_authenticates_with_its_client_certificate_and_outcomes_arrive(
    rig_factory: Callable[..., HubRig], pki: Path
) -> None:
    from tests.conftest import standard_replies

    rig = mtls_rig(rig_factory, pki, replies=standard_replies)
    alert = fresh_custody()
    rig.justice.publish(alert, routing_key=key_for(alert))

    rig.justice.wait_for(
        lambda got: {o["status"] for o in got} >= {"received", "accepted", "assessed"}
    )
    assert rig.trust.reply_results == [200, 200]  # the trust's replies, over mutual TLS


def test_a_client_certificate_of_another_service_is_answered_not_found(
    rig_factory: Callable[..., HubRig], pki: Path
) -> None:
    rig = mtls_rig(rig_factory, pki)
    alert, referral = delivered_referral(rig)  # went to wy-ld

    response = post(rig, response_to(referral), alert=alert, tls=client_tls(pki, "leeds-dat"))

    assert_refused(response, 404, "REC_NOT_FOUND")
    assert_only_received(rig, alert)


def test_over_https_a_request_without_a_client_certificate_is_refused_with_401(
    rig_factory: Callable[..., HubRig], pki: Path
) -> None:
    rig = mtls_rig(rig_factory, pki)
    alert, referral = delivered_referral(rig)

    response = post(rig, response_to(referral), alert=alert, tls=client_tls(pki, None))

    assert_refused(response, 401, "REC_UNAUTHORIZED")
    assert_only_received(rig, alert)


def test_a_client_certificate_from_a_ca_the_hub_does_not_trust_fails_the_handshake(
    rig_factory: Callable[..., HubRig], pki: Path
) -> None:
    rig = mtls_rig(rig_factory, pki)
    alert = fresh_custody()

    with pytest.raises(httpx.TransportError):
        post(rig, b"{}", alert=alert, tls=client_tls(pki, "rogue-client"))


def test_when_client_certificates_are_required_a_client_without_one_cannot_connect(
    rig_factory: Callable[..., HubRig], pki: Path
) -> None:
    rig = mtls_rig(rig_factory, pki, require_client_cert=True)
    alert, referral = delivered_referral(rig)

    with pytest.raises(httpx.TransportError):
        post(rig, response_to(referral), alert=alert, tls=client_tls(pki, None))
    accepted = post(rig, response_to(referral), alert=alert, tls=client_tls(pki, "wy-ld"))

    assert accepted.status_code == 200, accepted.text


def test_a_service_configured_with_certificate_and_token_must_present_both(
    rig_factory: Callable[..., HubRig], pki: Path
) -> None:
    token = secrets.token_urlsafe(32)
    rig = mtls_rig(rig_factory, pki, wy_ld_token=token)
    alert, referral = delivered_referral(rig)
    wy_ld = client_tls(pki, "wy-ld")

    certificate_only = post(rig, response_to(referral), alert=alert, tls=wy_ld)
    token_only = post(
        rig, response_to(referral), alert=alert, tls=client_tls(pki, None), token=token
    )
    both = post(rig, response_to(referral), alert=alert, tls=wy_ld, token=token)

    assert_refused(certificate_only, 401, "REC_UNAUTHORIZED")
    assert_refused(token_only, 401, "REC_UNAUTHORIZED")
    assert both.status_code == 200, both.text
    rig.justice.wait_for(lambda got: any(o["status"] == "accepted" for o in got))
