"""Routing: the pure choice of endpoints, against hand-built tables and the shipped rules."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from hub.messages import Pathway, SourceKind, Urgency, VulnerabilityType
from hub.routes.rules import (
    Match,
    RouteDecision,
    RouteTable,
    Rule,
    build_route_table,
    select_endpoints,
)
from hub.settings.load import load_settings

pytestmark = pytest.mark.unit

CONFIG = Path(__file__).resolve().parents[2] / "config"


def route(
    table: RouteTable,
    *,
    source_kind: str = "custody",
    organisation: str = "WYP01",
    vulnerabilities: Sequence[str] = ("mental_health",),
    pathway: str = "adult",
    urgency: str = "routine",
) -> RouteDecision:
    return select_endpoints(
        table,
        source_kind=source_kind,
        organisation=organisation,
        vulnerabilities=vulnerabilities,
        pathway=pathway,
        urgency=urgency,
    )


@pytest.fixture(scope="module")
def shipped() -> RouteTable:
    return load_settings(CONFIG, env={}).routes


# --- hand-built tables -------------------------------------------------------------------------


def test_no_rule_matching_is_an_explicit_default_decision() -> None:
    # given a table whose only rule is for courts
    table = RouteTable(
        default=("ld",),
        rules=(Rule("court", Match(source_kind=SourceKind.COURT), ("court-ld",)),),
    )
    # when a custody alert is routed
    decision = route(table, source_kind="custody")
    # then the default is used, and says so
    assert decision == RouteDecision(endpoints=("ld",), rules=("default",), used_default=True)


def test_first_matching_rule_wins_without_continue() -> None:
    table = RouteTable(
        default=("ld",),
        rules=(
            Rule("youth", Match(pathway=Pathway.YOUTH), ("yot",)),
            Rule("autism", Match(vulnerability=frozenset({VulnerabilityType.AUTISM})), ("asd",)),
        ),
    )
    decision = route(table, pathway="youth", vulnerabilities=["autism"])
    assert decision == RouteDecision(endpoints=("yot",), rules=("youth",), used_default=False)


def test_continue_accumulates_endpoints_from_later_rules() -> None:
    table = RouteTable(
        default=("ld",),
        rules=(
            Rule("urgent", Match(urgency=frozenset({Urgency.URGENT})), ("crisis",), continue_=True),
            Rule(
                "drugs",
                Match(vulnerability=frozenset({VulnerabilityType.SUBSTANCE_MISUSE})),
                ("dat",),
            ),
            Rule("never", Match(urgency=frozenset({Urgency.URGENT})), ("unreached",)),
        ),
    )
    decision = route(table, urgency="urgent", vulnerabilities=["substance_misuse"])
    assert decision.endpoints == ("crisis", "dat")
    assert decision.rules == ("urgent", "drugs")


def test_an_endpoint_named_by_several_rules_is_chosen_once_in_first_order() -> None:
    table = RouteTable(
        default=("ld",),
        rules=(
            Rule("a", Match(pathway=Pathway.ADULT), ("x", "ld"), continue_=True),
            Rule("b", Match(source_kind=SourceKind.CUSTODY), ("ld", "y", "x")),
        ),
    )
    assert route(table).endpoints == ("x", "ld", "y")


def test_every_condition_in_a_match_must_hold() -> None:
    match = Match(source_kind=SourceKind.COURT, organisation=frozenset({"LMC01"}))
    table = RouteTable(default=("ld",), rules=(Rule("lmc", match, ("court-ld",)),))
    assert route(table, source_kind="court", organisation="LMC01").rules == ("lmc",)
    assert route(table, source_kind="court", organisation="BMC01").used_default
    assert route(table, source_kind="custody", organisation="LMC01").used_default


def test_a_vulnerability_list_matches_when_the_alert_has_any_of_them() -> None:
    vulnerable = frozenset({VulnerabilityType.AUTISM, VulnerabilityType.LEARNING_DISABILITY})
    table = RouteTable(
        default=("ld",), rules=(Rule("nd", Match(vulnerability=vulnerable), ("nd",)),)
    )
    assert route(table, vulnerabilities=["physical_health", "autism"]).endpoints == ("nd",)
    assert route(table, vulnerabilities=["physical_health"]).used_default


def test_only_a_rule_that_matched_counts_and_a_continuing_match_is_not_the_default() -> None:
    table = RouteTable(
        default=("ld",),
        rules=(Rule("adult", Match(pathway=Pathway.ADULT), ("asc",), continue_=True),),
    )
    decision = route(table)
    assert decision == RouteDecision(endpoints=("asc",), rules=("adult",), used_default=False)


# --- the shipped config/routes.yaml ------------------------------------------------------------


def test_shipped_rules_send_a_youth_alert_to_youth_justice_health_only(shipped: RouteTable) -> None:
    decision = route(
        shipped, pathway="youth", urgency="emergency", vulnerabilities=["self_harm_suicide_risk"]
    )
    assert decision == RouteDecision(("leeds-yot-health",), ("youth",), used_default=False)


def test_shipped_rules_send_an_emergency_to_the_crisis_team_and_ld(shipped: RouteTable) -> None:
    decision = route(shipped, urgency="emergency", vulnerabilities=["mental_health"])
    assert decision.endpoints == ("leeds-mh-crisis", "wy-ld")
    assert decision.rules == ("crisis-emergency",)


def test_shipped_rules_send_self_harm_risk_to_the_crisis_team_and_ld(shipped: RouteTable) -> None:
    decision = route(shipped, vulnerabilities=["self_harm_suicide_risk"])
    assert decision.endpoints == ("leeds-mh-crisis", "wy-ld")
    assert decision.rules == ("crisis-self-harm",)


@pytest.mark.parametrize("vulnerability", ["substance_misuse", "alcohol_misuse"])
def test_shipped_rules_send_substance_or_alcohol_misuse_to_the_dat_and_ld(
    shipped: RouteTable, vulnerability: str
) -> None:
    decision = route(shipped, vulnerabilities=[vulnerability])
    assert decision.endpoints == ("leeds-dat", "wy-ld")
    assert decision.rules == ("substance-misuse",)


@pytest.mark.parametrize(
    "vulnerability", ["unstable_accommodation", "financial_hardship", "domestic_abuse"]
)
def test_shipped_rules_send_an_adults_social_needs_to_adult_social_care_and_ld(
    shipped: RouteTable, vulnerability: str
) -> None:
    decision = route(shipped, vulnerabilities=[vulnerability])
    assert decision.endpoints == ("leeds-adult-social-care", "wy-ld")
    assert decision.rules == ("adult-social-care",)


def test_shipped_rules_combine_every_service_an_adult_alert_needs_once_each(
    shipped: RouteTable,
) -> None:
    decision = route(
        shipped,
        urgency="emergency",
        vulnerabilities=["alcohol_misuse", "self_harm_suicide_risk", "unstable_accommodation"],
    )
    assert decision.endpoints == (
        "leeds-mh-crisis",
        "wy-ld",
        "leeds-dat",
        "leeds-adult-social-care",
    )
    assert decision.rules == (
        "crisis-emergency",
        "crisis-self-harm",
        "substance-misuse",
        "adult-social-care",
    )


def test_shipped_rules_send_an_alert_no_rule_covers_to_the_ld_service(shipped: RouteTable) -> None:
    decision = route(shipped, vulnerabilities=["learning_disability"], urgency="urgent")
    assert decision == RouteDecision(("wy-ld",), ("default",), used_default=True)


def test_select_endpoints_accepts_the_message_enums_as_well_as_strings(shipped: RouteTable) -> None:
    decision = route(
        shipped,
        source_kind=SourceKind.COURT,
        pathway=Pathway.ADULT,
        urgency=Urgency.ROUTINE,
        vulnerabilities=[VulnerabilityType.ALCOHOL_MISUSE],
    )
    assert decision.endpoints == ("leeds-dat", "wy-ld")


# ---- service levels: how long a service has to answer before a referral is overdue ---------


def levels_table(yaml_rules: str) -> RouteTable:
    import yaml

    return build_route_table(yaml.safe_load(yaml_rules))


def test_service_levels_default_to_72h_routine_4h_urgent_and_1h_emergency() -> None:
    table = levels_table("default: [ld]\n")
    for urgency, seconds in (("routine", 72 * 3600), ("urgent", 4 * 3600), ("emergency", 3600)):
        decision = select_endpoints(
            table,
            source_kind="custody",
            organisation="WYP",
            vulnerabilities=["mental_health"],
            pathway="adult",
            urgency=urgency,
        )
        assert decision.service_levels == {"ld": seconds}


def test_a_rule_overrides_the_service_level_and_the_shortest_wins_for_a_shared_endpoint() -> None:
    table = levels_table(
        """
default: [ld]
service_levels: {urgent: 6h}
rules:
  - name: drugs
    match: {vulnerability: [substance_misuse]}
    send_to: [dat, ld]
    service_levels: {urgent: 2h}
    continue: true
  - name: everyone
    match: {source_kind: custody}
    send_to: [ld, housing]
"""
    )
    decision = select_endpoints(
        table,
        source_kind="custody",
        organisation="WYP",
        vulnerabilities=["substance_misuse"],
        pathway="adult",
        urgency="urgent",
    )
    assert decision.service_levels == {"dat": 7200, "ld": 7200, "housing": 6 * 3600}


@pytest.mark.parametrize("text", ["0h", "4", "4 h", "-1h", "1w", "1.5h"])
def test_a_malformed_service_level_is_a_schema_problem(text: str) -> None:
    from jsonschema import Draft202012Validator

    from hub.routes.rules import ROUTES_SCHEMA

    errors = list(
        Draft202012Validator(ROUTES_SCHEMA).iter_errors(
            {"default": ["ld"], "service_levels": {"urgent": text}}
        )
    )
    assert errors, text
