"""Settings: the shipped config loads, the environment overrides, and every configuration problem
is reported together, each naming its file and line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.messages import HubIdentity, Recipient
from hub.settings.load import load_settings
from hub.settings.types import BearerAuth, EndpointKind, SigningKey

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[2] / "config"

HUB_YAML = """\
hub:
  ods_code: XHB01
  name: Test Hub
  endpoint: http://127.0.0.1:8080/fhir
endpoints:
  leeds-ld:
    kind: fhir-rest
    url: http://127.0.0.1:9001/fhir
    ods_code: XLD01
    organisation_name: Leeds L&D
  leeds-yot:
    kind: fhir-rest
    url: http://127.0.0.1:9002/fhir/
    ods_code: XYT01
    organisation_name: Leeds YOT Health
"""

ROUTES_YAML = """\
default: [leeds-ld]
rules:
  - name: youth-court
    match: {source_kind: court, pathway: youth}
    send_to: [leeds-yot]
"""


def write(tmp_path: Path, hub: str = HUB_YAML, routes: str = ROUTES_YAML) -> Path:
    (tmp_path / "hub.yaml").write_text(textwrap.dedent(hub))
    (tmp_path / "routes.yaml").write_text(textwrap.dedent(routes))
    return tmp_path


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing `needle`, so tests do not count by hand."""
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def problems(config_dir: Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(config_dir, env={} if env is None else env)
    return list(caught.value.problems)


# --- loading -----------------------------------------------------------------------------------


def test_the_shipped_config_loads_with_an_empty_environment() -> None:
    settings = load_settings(CONFIG, env={})
    assert set(settings.endpoints) == {
        "wy-ld",
        "leeds-mh-crisis",
        "leeds-dat",
        "leeds-yot-health",
        "leeds-adult-social-care",
    }
    assert settings.routes.default == ("wy-ld",)
    assert settings.hub.endpoint.startswith("http://127.0.0.1")
    assert all(e.kind is EndpointKind.FHIR_REST for e in settings.endpoints.values())


def test_a_minimal_config_takes_the_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path), env={})
    assert settings.hub == HubIdentity("XHB01", "Test Hub", "http://127.0.0.1:8080/fhir")
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672//"
    assert settings.db_url == "sqlite:///hub.db"
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8080)
    assert (settings.prefetch, settings.max_body_bytes, settings.log_level) == (10, 65536, "INFO")
    assert settings.source_orgs == {}
    endpoint = settings.endpoints["leeds-ld"]
    assert (endpoint.timeout_seconds, endpoint.max_in_flight, endpoint.paused) == (10.0, 1, False)
    assert endpoint.auth is None and endpoint.service_id is None


def test_an_endpoint_gives_its_process_message_url_and_recipient(tmp_path: Path) -> None:
    endpoint = load_settings(write(tmp_path), env={}).endpoints["leeds-yot"]
    assert endpoint.process_message_url == "http://127.0.0.1:9002/fhir/$process-message"
    assert endpoint.recipient == Recipient("leeds-yot", "XYT01", "Leeds YOT Health", None)


def test_file_values_are_read_and_the_environment_overrides_them(tmp_path: Path) -> None:
    hub = HUB_YAML + textwrap.dedent("""\
        amqp: {url: "amqp://rabbit.internal:5672/hub", prefetch: 25}
        ledger: {url: "sqlite:///var/hub.db"}
        api: {host: 0.0.0.0, port: 8081, max_body_bytes: 131072}
        logging: {level: WARNING}
        sources: {WYP01: [wyp-custody, wyp-custody-dr]}
        """)
    config = write(tmp_path, hub=hub)

    from_file = load_settings(config, env={})
    assert from_file.amqp_url == "amqp://rabbit.internal:5672/hub"
    assert (from_file.api_host, from_file.api_port, from_file.prefetch) == ("0.0.0.0", 8081, 25)
    assert from_file.max_body_bytes == 131072 and from_file.log_level == "WARNING"
    assert from_file.source_orgs == {"WYP01": ("wyp-custody", "wyp-custody-dr")}

    env = {
        "HUB_AMQP_URL": "amqp://hub:s3cret@rabbit.internal:5672/hub",
        "HUB_DB_URL": "postgresql+psycopg://hub:s3cret@db/hub",
        "HUB_API_PORT": "9090",
        "HUB_LOG_LEVEL": "debug",
    }
    overridden = load_settings(config, env=env)
    assert overridden.amqp_url == env["HUB_AMQP_URL"]
    assert overridden.db_url == env["HUB_DB_URL"]
    assert overridden.api_port == 9090 and overridden.log_level == "DEBUG"


def test_credentials_from_the_environment_never_appear_in_the_settings_repr(
    tmp_path: Path,
) -> None:
    hub = HUB_YAML + "    auth: {type: bearer, token_env: YOT_TOKEN}\n"
    env = {"HUB_AMQP_URL": "amqp://hub:s3cret@rabbit//", "YOT_TOKEN": "tok-123"}
    settings = load_settings(write(tmp_path, hub=hub), env=env)
    assert settings.endpoints["leeds-yot"].auth == BearerAuth("YOT_TOKEN", "tok-123")
    assert settings.endpoints["leeds-yot"].auth.headers == {"Authorization": "Bearer tok-123"}
    assert "s3cret" not in repr(settings) and "tok-123" not in repr(settings)


def test_a_bad_environment_value_is_reported_without_quoting_it(tmp_path: Path) -> None:
    found = problems(write(tmp_path), env={"HUB_API_PORT": "http", "HUB_DB_URL": "mysql://pw"})
    assert found == [
        "environment HUB_DB_URL: must be a sqlite:// or postgresql:// URL",
        "environment HUB_API_PORT: must be a port number from 1 to 65535",
    ]


# --- endpoint kinds ----------------------------------------------------------------------------

MLLP_ENDPOINT = """\
  leeds-pas:
    kind: hl7v2-mllp
    host: pas.leeds.example
    port: 2575
    timeout_seconds: 5
    ods_code: XLP01
    organisation_name: Leeds PAS
"""
WEBHOOK_ENDPOINT = """\
  leeds-asc:
    kind: webhook
    url: https://asc.leeds.example/hooks/ld
    secret_env: LEEDS_ASC_KEY
    timeout_seconds: 15
    ods_code: XLA01
    organisation_name: Leeds Adult Social Care
"""


def test_hl7v2_mllp_and_webhook_endpoints_load_with_their_own_fields(tmp_path: Path) -> None:
    config = write(tmp_path, hub=HUB_YAML + MLLP_ENDPOINT + WEBHOOK_ENDPOINT)
    settings = load_settings(config, env={"LEEDS_ASC_KEY": "k3y-material"})

    pas = settings.endpoints["leeds-pas"]
    assert pas.kind is EndpointKind.HL7V2_MLLP
    assert (pas.host, pas.port, pas.timeout_seconds, pas.url) == (
        "pas.leeds.example",
        2575,
        5,
        None,
    )
    assert pas.recipient == Recipient("leeds-pas", "XLP01", "Leeds PAS", None)
    asc = settings.endpoints["leeds-asc"]
    assert asc.kind is EndpointKind.WEBHOOK
    assert (asc.url, asc.timeout_seconds) == ("https://asc.leeds.example/hooks/ld", 15)
    assert asc.signing == SigningKey("LEEDS_ASC_KEY", b"k3y-material")
    assert "k3y-material" not in repr(settings)


def test_a_webhook_whose_secret_variable_is_not_set_is_an_error_naming_it(tmp_path: Path) -> None:
    hub = HUB_YAML + WEBHOOK_ENDPOINT
    config = write(tmp_path, hub=hub)
    assert problems(config, env={}) == [
        f"{config}/hub.yaml:{line_of(hub, 'secret_env')}: endpoint 'leeds-asc': environment "
        "variable LEEDS_ASC_KEY is not set"
    ]


def test_a_webhook_without_url_or_secret_env_is_an_error(tmp_path: Path) -> None:
    hub = HUB_YAML + WEBHOOK_ENDPOINT.replace(
        "    url: https://asc.leeds.example/hooks/ld\n", ""
    ).replace("    secret_env: LEEDS_ASC_KEY\n", "")
    config = write(tmp_path, hub=hub)
    line = line_of(hub, "leeds-asc:")
    assert problems(config) == [
        f"{config}/hub.yaml:{line}: endpoints.leeds-asc: missing required key 'secret_env'",
        f"{config}/hub.yaml:{line}: endpoints.leeds-asc: missing required key 'url'",
    ]


def test_a_literal_webhook_secret_in_the_file_is_an_error_that_never_quotes_it(
    tmp_path: Path,
) -> None:
    hub = HUB_YAML + WEBHOOK_ENDPOINT + "    secret: k3y-material\n"
    config = write(tmp_path, hub=hub)
    [problem] = problems(config, env={"LEEDS_ASC_KEY": "k3y-material"})
    assert problem.startswith(
        f"{config}/hub.yaml:{line_of(hub, 'secret:')}: endpoints.leeds-asc.secret: secrets never "
        "live in files"
    )
    assert "k3y-material" not in problem


def test_an_mllp_endpoint_needs_host_and_a_port_number(tmp_path: Path) -> None:
    hub = HUB_YAML + MLLP_ENDPOINT.replace("    host: pas.leeds.example\n", "").replace(
        "2575", "70000"
    )
    config = write(tmp_path, hub=hub)
    assert problems(config) == [
        f"{config}/hub.yaml:{line_of(hub, 'leeds-pas:')}: endpoints.leeds-pas: missing required "
        "key 'host'",
        f"{config}/hub.yaml:{line_of(hub, 'port:')}: endpoints.leeds-pas.port: 70000 is greater "
        "than the maximum of 65535",
    ]


def test_a_field_of_another_kind_is_an_unknown_key(tmp_path: Path) -> None:
    hub = HUB_YAML + MLLP_ENDPOINT + "    url: http://127.0.0.1:9009/fhir\n"
    config = write(tmp_path, hub=hub)
    assert problems(config) == [
        f"{config}/hub.yaml:{line_of(hub, 'url: http://127.0.0.1:9009')}: unknown key 'url' in "
        "endpoints.leeds-pas"
    ]


# --- errors name file and line -----------------------------------------------------------------


def test_a_rule_sending_to_an_unknown_endpoint_names_the_file_line_and_endpoint(
    tmp_path: Path,
) -> None:
    routes = ROUTES_YAML.replace("[leeds-yot]", "[leeds-yot-health]")
    config = write(tmp_path, routes=routes)
    line = line_of(routes, "send_to")
    assert problems(config) == [
        f"{config}/routes.yaml:{line}: rule 'youth-court' sends to unknown endpoint "
        "'leeds-yot-health'"
    ]


def test_an_unknown_key_is_an_error_at_its_own_line(tmp_path: Path) -> None:
    hub = HUB_YAML.replace("    ods_code: XYT01\n", "    ods_code: XYT01\n    retries: 3\n")
    config = write(tmp_path, hub=hub)
    assert problems(config) == [
        f"{config}/hub.yaml:{line_of(hub, 'retries')}: unknown key 'retries' in endpoints.leeds-yot"
    ]


def test_the_report_refresh_interval_defaults_to_5_minutes_and_0_turns_it_off(
    tmp_path: Path,
) -> None:
    assert load_settings(write(tmp_path), env={}).report_refresh_seconds == 300
    assert load_settings(CONFIG, env={}).report_refresh_seconds == 300  # as shipped, commented
    for given, read in (("0", 0.0), ("60", 60.0), ("2.5", 2.5)):
        hub = HUB_YAML + f"reporting:\n  refresh_seconds: {given}\n"
        assert load_settings(write(tmp_path, hub=hub), env={}).report_refresh_seconds == read


def test_a_negative_or_non_numeric_report_refresh_interval_names_file_and_line(
    tmp_path: Path,
) -> None:
    hub = HUB_YAML + "reporting:\n  refresh_seconds: -1\n"
    config = write(tmp_path, hub=hub)
    assert problems(config) == [
        f"{config}/hub.yaml:{line_of(hub, 'refresh_seconds')}: reporting.refresh_seconds: -1 is "
        "less than the minimum of 0"
    ]
    hub = HUB_YAML + "reporting:\n  refresh_seconds: often\n  every: 5\n"
    config = write(tmp_path, hub=hub)
    assert problems(config) == [
        f"{config}/hub.yaml:{line_of(hub, 'refresh_seconds')}: reporting.refresh_seconds: must "
        "be a number",
        f"{config}/hub.yaml:{line_of(hub, 'every')}: unknown key 'every' in reporting",
    ]


def test_a_value_outside_a_closed_list_is_an_error_naming_the_allowed_values(
    tmp_path: Path,
) -> None:
    routes = ROUTES_YAML + (
        "  - name: drugs\n"
        "    match:\n"
        "      vulnerability: [substance_misuse, drugs]\n"
        "    send_to: [leeds-ld]\n"
    )
    config = write(tmp_path, routes=routes)
    [problem] = problems(config)
    assert problem.startswith(
        f"{config}/routes.yaml:{line_of(routes, 'drugs]')}: rules[1].match.vulnerability[1]: "
        "'drugs' is not one of: mental_health,"
    )


def test_an_unknown_endpoint_kind_is_an_error(tmp_path: Path) -> None:
    hub = HUB_YAML.replace(
        "kind: fhir-rest\n    url: http://127.0.0.1:9002", "kind: mllp\n    url: x"
    )
    config = write(tmp_path, hub=hub)
    assert problems(config) == [
        f"{config}/hub.yaml:{line_of(hub, 'kind: mllp')}: endpoints.leeds-yot.kind: 'mllp' is not "
        "one of: fhir-rest, hl7v2-mllp, webhook, mesh"
    ]


def test_a_missing_default_is_an_error(tmp_path: Path) -> None:
    routes = ROUTES_YAML.replace("default: [leeds-ld]\n", "")
    config = write(tmp_path, routes=routes)
    assert problems(config) == [
        f"{config}/routes.yaml:1: (top level): missing required key 'default'"
    ]


def test_an_empty_default_is_an_error(tmp_path: Path) -> None:
    config = write(tmp_path, routes=ROUTES_YAML.replace("[leeds-ld]", "[]"))
    assert problems(config) == [f"{config}/routes.yaml:1: default: must not be empty"]


def test_a_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    routes = "default: [leeds-ld]\nrules:\n  - name: x\n   match: {pathway: youth}\n"
    config = write(tmp_path, routes=routes)
    [problem] = problems(config)
    assert problem.startswith(f"{config}/routes.yaml:4: YAML syntax error:")


def test_a_literal_token_in_the_file_is_an_error_that_never_quotes_it(tmp_path: Path) -> None:
    hub = HUB_YAML + "    auth: {type: bearer, token_env: YOT_TOKEN, token: tok-123}\n"
    config = write(tmp_path, hub=hub)
    found = problems(config, env={"YOT_TOKEN": "tok-123"})
    assert len(found) == 1
    assert found[0].startswith(
        f"{config}/hub.yaml:{line_of(hub, 'token:')}: endpoints.leeds-yot.auth.token: "
        "secrets never live in files"
    )
    assert "tok-123" not in found[0]


def test_a_password_in_a_url_in_the_file_is_an_error(tmp_path: Path) -> None:
    hub = HUB_YAML + "amqp:\n  url: amqp://hub:s3cret@rabbit//\n"
    config = write(tmp_path, hub=hub)
    [problem] = problems(config)
    assert problem.startswith(f"{config}/hub.yaml:{line_of(hub, 'url: amqp')}: amqp.url: URL")
    assert "s3cret" not in problem


def test_a_token_env_variable_that_is_not_set_is_named_in_the_error(tmp_path: Path) -> None:
    hub = HUB_YAML + "    auth: {type: bearer, token_env: YOT_TOKEN}\n"
    config = write(tmp_path, hub=hub)
    assert problems(config, env={"YOT_TOKEN": ""}) == [
        f"{config}/hub.yaml:{line_of(hub, 'auth:')}: endpoint 'leeds-yot': environment variable "
        "YOT_TOKEN is not set"
    ]


def test_a_duplicate_key_is_an_error_at_its_second_occurrence(tmp_path: Path) -> None:
    hub = HUB_YAML.replace("    ods_code: XYT01\n", "    ods_code: XYT01\n    ods_code: XYT02\n")
    config = write(tmp_path, hub=hub)
    assert problems(config) == [
        f"{config}/hub.yaml:{line_of(hub, 'XYT02')}: duplicate key 'ods_code'"
    ]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "hub.yaml").unlink()
    assert problems(tmp_path) == [f"{tmp_path}/hub.yaml: file not found"]


def test_every_problem_in_both_files_is_reported_together_in_file_order(tmp_path: Path) -> None:
    # given several independent mistakes across both files
    hub = HUB_YAML.replace("  name: Test Hub\n", "  name: Test Hub\n  colour: blue\n").replace(
        "    ods_code: XLD01\n", ""
    )
    hub += "    timeout_seconds: 0\n    auth: {type: bearer, token_env: YOT_TOKEN}\n"
    routes = (
        ROUTES_YAML.replace("pathway: youth", "pathway: kids").replace(
            "[leeds-yot]", "[leeds-yot, nowhere]"
        )
        + "  - name: youth-court\n    match: {urgency: [emergency]}\n    send_to: [leeds-ld]\n"
    )
    config = write(tmp_path, hub=hub, routes=routes)
    # when loaded
    found = problems(config, env={"HUB_API_PORT": "0"})
    # then each is there, naming its file and line, hub.yaml first, each file in line order
    h, r = f"{config}/hub.yaml", f"{config}/routes.yaml"
    assert found == [
        f"{h}:{line_of(hub, 'colour')}: unknown key 'colour' in hub",
        f"{h}:{line_of(hub, 'leeds-ld:')}: endpoints.leeds-ld: missing required key 'ods_code'",
        f"{h}:{line_of(hub, 'timeout_seconds')}: endpoints.leeds-yot.timeout_seconds: 0 is less "
        "than or equal to the minimum of 0",
        f"{h}:{line_of(hub, 'auth:')}: endpoint 'leeds-yot': environment variable YOT_TOKEN is "
        "not set",
        f"{r}:{line_of(routes, 'kids')}: rules[0].match.pathway: 'kids' is not one of: adult, "
        "youth",
        f"{r}:{line_of(routes, 'nowhere')}: rule 'youth-court' sends to unknown endpoint 'nowhere'",
        f"{r}:{line_of(routes, 'emergency') - 1}: rule 'youth-court' is defined twice",
        "environment HUB_API_PORT: must be a port number from 1 to 65535",
    ]
