"""Who a request to the hub's `$process-message` authenticates as (hub.inbound_auth): bearer
tokens compared in constant time over every service, client-certificate subjects as RFC 4514
names, and a service that needs both getting neither alone."""

from __future__ import annotations

import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.security import inbound_auth
from hub.security.distinguished_names import (
    DistinguishedName,
    format_distinguished_name,
    parse_distinguished_name,
    peer_subject_name,
)
from hub.security.inbound_auth import Authentication, InboundCredentials, authenticate, token_digest

pytestmark = pytest.mark.unit

WY_TOKEN = "wy-ld-token-0123456789abcdefghijklmnop"
DAT_TOKEN = "leeds-dat-token-0123456789abcdefghijkl"
YJH_SUBJECT = "CN=yjh.leeds.example.nhs.uk,O=Leeds Youth Justice Health,C=GB"
BOTH_SUBJECT = "CN=both.example.nhs.uk,O=Both,C=GB"
BOTH_TOKEN = "both-token-0123456789abcdefghijklmnopqrs"

SERVICES = {
    "wy-ld": InboundCredentials(token_env="WY", token_sha256=token_digest(WY_TOKEN)),
    "leeds-dat": InboundCredentials(token_env="DAT", token_sha256=token_digest(DAT_TOKEN)),
    "leeds-yjh": InboundCredentials(client_cert_subject=parse_distinguished_name(YJH_SUBJECT)),
    "both": InboundCredentials(
        token_env="BOTH",
        token_sha256=token_digest(BOTH_TOKEN),
        client_cert_subject=parse_distinguished_name(BOTH_SUBJECT),
    ),
}


def auth(authorization: str | None = None, cert: str | None = None) -> Authentication:
    return authenticate(SERVICES, authorization=authorization, client_cert_name=cert)


def test_a_request_without_credentials_is_refused_without_an_error_code() -> None:
    assert auth() == Authentication(endpoints=frozenset(), error=None)


def test_a_token_authenticates_as_its_own_service_only() -> None:
    assert auth(f"Bearer {WY_TOKEN}").endpoints == {"wy-ld"}
    assert auth(f"bearer {DAT_TOKEN}").endpoints == {"leeds-dat"}  # the scheme is case-blind


def test_a_wrong_token_is_an_invalid_token() -> None:
    result = auth("Bearer not-a-token-any-service-has-0123456789")
    assert not result.ok and result.error == "invalid_token"


@pytest.mark.parametrize(
    "header", ["Basic d3k6bGQ=", f"Bearer{WY_TOKEN}", "Bearer", "Bearer two words", "Bearer é"]
)
def test_a_malformed_authorization_header_is_an_invalid_request(header: str) -> None:
    result = auth(header)
    assert not result.ok and result.error == "invalid_request"


def test_every_configured_token_is_compared_even_after_a_match(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[bytes] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(inbound_auth.hmac, "compare_digest", spy)
    auth(f"Bearer {WY_TOKEN}")  # the first service's token
    assert len(compared) == 3  # wy-ld, leeds-dat and both: no early exit
    assert all(len(digest) == 32 for digest in compared)  # fixed length: nothing from lengths


def test_a_token_shared_by_two_endpoints_authenticates_as_both() -> None:
    shared = InboundCredentials(token_env="S", token_sha256=token_digest(WY_TOKEN))
    result = authenticate(
        {"wy-ld": SERVICES["wy-ld"], "wy-ld-mesh": shared},
        authorization=f"Bearer {WY_TOKEN}",
        client_cert_name=None,
    )
    assert result.endpoints == {"wy-ld", "wy-ld-mesh"}


def test_a_certificate_subject_authenticates_as_its_service() -> None:
    assert auth(cert=YJH_SUBJECT).endpoints == {"leeds-yjh"}


def test_an_unknown_certificate_is_an_invalid_token() -> None:
    assert auth(cert="CN=someone,O=Else").error == "invalid_token"


def test_a_service_needing_token_and_certificate_gets_neither_alone() -> None:
    assert auth(f"Bearer {BOTH_TOKEN}").error == "invalid_token"
    assert auth(cert=BOTH_SUBJECT).error == "invalid_token"
    assert auth(f"Bearer {BOTH_TOKEN}", cert=BOTH_SUBJECT).endpoints == {"both"}


def test_a_valid_credential_does_not_excuse_an_unknown_one_beside_it() -> None:
    # the yjh certificate is good, but the token belongs to nobody
    assert auth("Bearer unknown-token-0123456789abcdefghijk", cert=YJH_SUBJECT).error == (
        "invalid_token"
    )
    # wy-ld's token is good, but the certificate belongs to nobody
    assert auth(f"Bearer {WY_TOKEN}", cert="CN=stranger").error == "invalid_token"


def test_two_known_credentials_of_different_services_authenticate_as_both() -> None:
    assert auth(f"Bearer {WY_TOKEN}", cert=YJH_SUBJECT).endpoints == {"wy-ld", "leeds-yjh"}


def test_no_service_configured_means_nobody_authenticates() -> None:
    result = authenticate({}, authorization=f"Bearer {WY_TOKEN}", client_cert_name=YJH_SUBJECT)
    assert not result.ok and result.error == "invalid_token"


def test_the_token_is_kept_only_as_a_digest() -> None:
    credentials = SERVICES["wy-ld"]
    assert WY_TOKEN not in repr(credentials)
    assert not any(WY_TOKEN in str(getattr(credentials, f)) for f in credentials.__slots__)


# -- distinguished names ------------------------------------------------------------------


def test_names_compare_regardless_of_spaces_type_case_and_long_type_names() -> None:
    assert parse_distinguished_name(
        "commonName = yjh.leeds.example.nhs.uk , o=Leeds Youth Justice Health,countryName=GB"
    ) == parse_distinguished_name(YJH_SUBJECT)


def test_rdn_order_and_values_matter() -> None:
    reordered = "C=GB,O=Leeds Youth Justice Health,CN=yjh.leeds.example.nhs.uk"
    assert parse_distinguished_name(reordered) != parse_distinguished_name(YJH_SUBJECT)
    assert parse_distinguished_name("CN=A") != parse_distinguished_name("CN=a")


def test_a_peer_certificate_subject_reads_as_openssl_prints_it() -> None:
    # ssl.getpeercert()['subject']: RDNs as the certificate holds them, most general first
    subject = (
        (("countryName", "GB"),),
        (("organizationName", "Leeds Youth Justice Health"),),
        (("commonName", "yjh.leeds.example.nhs.uk"),),
    )
    assert peer_subject_name(subject) == YJH_SUBJECT


def test_special_characters_and_multi_valued_rdns_survive_the_round_trip() -> None:
    subject = (
        (("organizationName", 'Smith, Jones + "Partners" <LLP>; #1'),),
        (("commonName", " padded "), ("userId", "u=1")),
    )
    text = peer_subject_name(subject)
    assert parse_distinguished_name(text) == (
        (("CN", " padded "), ("UID", "u=1")),
        (("O", 'Smith, Jones + "Partners" <LLP>; #1'),),
    )


def test_escaped_utf8_bytes_are_read_as_text() -> None:
    assert parse_distinguished_name("CN=Caf\\C3\\A9") == ((("CN", "Café"),),)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "CN",
        "CN=",
        "=x",
        "CN=a,",
        "C N=x",
        "CN=a\\",
        "CN=a\\zz",
        "CN=#0403",
        "CN=a<b",
        "CN=\\FF",
    ],
)
def test_malformed_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_distinguished_name(text)


_VALUES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20)
_TYPES = st.sampled_from(["CN", "O", "OU", "C", "L", "ST", "DC", "UID", "emailaddress"])
_RDNS = st.lists(
    st.lists(st.tuples(_TYPES, _VALUES), min_size=1, max_size=3).map(
        lambda avas: tuple(sorted(avas))
    ),
    min_size=1,
    max_size=4,
).map(tuple)


@given(_RDNS)
def test_any_name_survives_formatting_and_parsing(rdns: DistinguishedName) -> None:
    assert parse_distinguished_name(format_distinguished_name(rdns)) == rdns
