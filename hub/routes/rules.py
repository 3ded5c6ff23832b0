"""Routing rules as data, and the pure function that picks endpoints for an alert.

No I/O and nothing from hub.adapters: rules arrive as already-parsed data (settings.py reads the
YAML), and `select_endpoints` only looks at the values it is given.

`config/routes.yaml`::

    default: [wy-ld]              # endpoints for an alert no rule matches (required, non-empty)
    rules:                        # tried in order; optional (no rules = everything to default)
      - name: youth               # unique, lower-case words joined by '-'; 'default' is reserved
        match:                    # every key given must hold (AND); at least one key
          source_kind: court      #   custody | court
          organisation: [LMC01]   #   source organisation codes: any of them
          vulnerability: [autism] #   vulnerability types: the alert has ANY of them
          pathway: youth          #   adult | youth
          urgency: [emergency]    #   routine | urgent | emergency: any of them
        send_to: [leeds-yot-health]   # configured endpoint names (non-empty)
        continue: false           # optional; true = keep trying later rules, endpoints accumulate
        service_levels: {urgent: 2h}  # optional; overrides the defaults below for this rule
    service_levels:               # optional: how long a service has to send an outcome, by
      routine: 72h                #   urgency (defaults 72h / 4h / 1h); 30m, 4h, 3d…
      urgent: 4h
      emergency: 1h

A referral with no outcome from its service once its service level has passed is overdue (see
hub/stages/overdue.py). An endpoint named by several matched rules gets the shortest of their
levels.

First matching rule wins, unless it says `continue: true`. When no rule matches, the decision
says so explicitly: `used_default=True`, `rules=('default',)`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.messages import Pathway, SourceKind, Urgency, VulnerabilityType

DEFAULT_RULE = "default"  # the name a decision reports when no rule matched

# A path into the parsed document ("rules", 2, "send_to", 0) → "config/routes.yaml:14".
Locate = Callable[[tuple[str | int, ...]], str]

_NAME = r"^[a-z0-9]+(-[a-z0-9]+)*$"
_DURATION = r"^[1-9][0-9]{0,5}[mhd]$"
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}

# How long a service has to send an outcome before the referral is overdue, by urgency.
DEFAULT_SERVICE_LEVELS: Mapping[Urgency, int] = {
    Urgency.ROUTINE: 72 * 3600,
    Urgency.URGENT: 4 * 3600,
    Urgency.EMERGENCY: 3600,
}


def duration_seconds(text: str) -> int:
    """ "30m" → 1800, "4h" → 14400, "3d" → 259200 (text that passed the schema's pattern)."""
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]]


def _values(enum: Iterable[Any]) -> list[str]:
    return [str(member) for member in enum]


def _list_of(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "minItems": 1, "uniqueItems": True, "items": item}


ROUTES_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["default"],
    "properties": {
        "default": _list_of({"type": "string", "minLength": 1}),
        "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}},
        "service_levels": {"$ref": "#/$defs/service_levels"},
    },
    "$defs": {
        "service_levels": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                urgency: {
                    "type": "string",
                    "pattern": _DURATION,
                    "x-hint": "a duration such as 30m, 4h or 3d",
                }
                for urgency in _values(Urgency)
            },
        },
        "rule": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name", "match", "send_to"],
            "properties": {
                "name": {
                    "type": "string",
                    "pattern": _NAME,
                    "x-hint": "lower-case letters and digits in words joined by '-'",
                },
                "match": {"$ref": "#/$defs/match"},
                "send_to": _list_of({"type": "string", "minLength": 1}),
                "continue": {"type": "boolean"},
                "service_levels": {"$ref": "#/$defs/service_levels"},
            },
        },
        "match": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "source_kind": {"type": "string", "enum": _values(SourceKind)},
                "organisation": _list_of({"type": "string", "minLength": 1}),
                "vulnerability": _list_of({"type": "string", "enum": _values(VulnerabilityType)}),
                "pathway": {"type": "string", "enum": _values(Pathway)},
                "urgency": _list_of({"type": "string", "enum": _values(Urgency)}),
            },
        },
    },
}


@dataclass(frozen=True, slots=True)
class Match:
    """Conditions on an alert; None / empty means 'any'. Lists match when any value does."""

    source_kind: SourceKind | None = None
    organisation: frozenset[str] = frozenset()
    vulnerability: frozenset[VulnerabilityType] = frozenset()
    pathway: Pathway | None = None
    urgency: frozenset[Urgency] = frozenset()

    def matches(
        self,
        *,
        source_kind: str,
        organisation: str,
        vulnerabilities: Sequence[str],
        pathway: str,
        urgency: str,
    ) -> bool:
        return (
            (self.source_kind is None or self.source_kind == source_kind)
            and (not self.organisation or organisation in self.organisation)
            and (not self.vulnerability or any(v in self.vulnerability for v in vulnerabilities))
            and (self.pathway is None or self.pathway == pathway)
            and (not self.urgency or urgency in self.urgency)
        )


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    match: Match
    send_to: tuple[str, ...]
    continue_: bool = False  # YAML `continue`: later rules are evaluated too
    service_levels: Mapping[Urgency, int] = field(default_factory=dict)  # seconds; overrides


@dataclass(frozen=True, slots=True)
class RouteTable:
    default: tuple[str, ...]
    rules: tuple[Rule, ...] = ()
    service_levels: Mapping[Urgency, int] = field(
        default_factory=lambda: dict(DEFAULT_SERVICE_LEVELS)
    )


@dataclass(frozen=True, slots=True)
class RouteDecision:
    endpoints: tuple[str, ...]  # de-duplicated, in the order the rules named them
    rules: tuple[str, ...]  # names of the matched rules, or ('default',)
    used_default: bool
    # Per endpoint: seconds its service has to send an outcome (the shortest of the levels of
    # the rules that named it, for this alert's urgency).
    service_levels: Mapping[str, int] = field(default_factory=dict, compare=False)


def select_endpoints(
    table: RouteTable,
    *,
    source_kind: str,
    organisation: str,
    vulnerabilities: Sequence[str],
    pathway: str,
    urgency: str,
) -> RouteDecision:
    """Pick the endpoints for one alert. Pure: same table and facts, same decision."""
    endpoints: list[str] = []
    matched: list[str] = []
    default_level = table.service_levels[Urgency(urgency)]
    levels: dict[str, int] = {}
    for rule in table.rules:
        if rule.match.matches(
            source_kind=source_kind,
            organisation=organisation,
            vulnerabilities=vulnerabilities,
            pathway=pathway,
            urgency=urgency,
        ):
            matched.append(rule.name)
            endpoints.extend(rule.send_to)
            level = rule.service_levels.get(Urgency(urgency), default_level)
            for endpoint in rule.send_to:
                levels[endpoint] = min(levels.get(endpoint, level), level)
            if not rule.continue_:
                break
    if not matched:
        default = _unique(table.default)
        return RouteDecision(
            default,
            (DEFAULT_RULE,),
            used_default=True,
            service_levels={e: default_level for e in default},
        )
    return RouteDecision(
        _unique(endpoints), tuple(matched), used_default=False, service_levels=levels
    )


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def route_problems(data: object, *, endpoints: Collection[str], locate: Locate) -> list[str]:
    """What the schema cannot see: unknown endpoints, duplicate or reserved rule names.

    Tolerates data that failed the schema (checks only what has the right shape), so these
    problems are reported together with the schema's."""
    if not isinstance(data, Mapping):
        return []
    problems: list[str] = []
    default = data.get("default")
    if isinstance(default, list):
        for i, name in enumerate(default):
            if isinstance(name, str) and name not in endpoints:
                problems.append(
                    f"{locate(('default', i))}: default sends to unknown endpoint {name!r}"
                )
    rules = data.get("rules")
    if not isinstance(rules, list):
        return problems
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        name = rule.get("name")
        label = f"rule {name!r}" if isinstance(name, str) else f"rules[{i}]"
        if isinstance(name, str):
            if name == DEFAULT_RULE:
                problems.append(
                    f"{locate(('rules', i, 'name'))}: rule name {DEFAULT_RULE!r} is reserved "
                    "for decisions no rule matched"
                )
            elif name in seen:
                problems.append(f"{locate(('rules', i, 'name'))}: {label} is defined twice")
            seen.add(name)
        send_to = rule.get("send_to")
        if isinstance(send_to, list):
            for j, target in enumerate(send_to):
                if isinstance(target, str) and target not in endpoints:
                    problems.append(
                        f"{locate(('rules', i, 'send_to', j))}: {label} sends to unknown "
                        f"endpoint {target!r}"
                    )
    return problems


def build_route_table(data: Mapping[str, Any]) -> RouteTable:
    """Turn data that passed ROUTES_SCHEMA and `route_problems` into a RouteTable."""
    return RouteTable(
        default=tuple(data["default"]),
        rules=tuple(_build_rule(rule) for rule in data.get("rules", ())),
        service_levels={**DEFAULT_SERVICE_LEVELS, **_levels(data.get("service_levels", {}))},
    )


def _levels(data: Mapping[str, str]) -> dict[Urgency, int]:
    return {Urgency(urgency): duration_seconds(text) for urgency, text in data.items()}


def _build_rule(rule: Mapping[str, Any]) -> Rule:
    match = rule["match"]
    return Rule(
        name=rule["name"],
        match=Match(
            source_kind=SourceKind(match["source_kind"]) if "source_kind" in match else None,
            organisation=frozenset(match.get("organisation", ())),
            vulnerability=frozenset(VulnerabilityType(v) for v in match.get("vulnerability", ())),
            pathway=Pathway(match["pathway"]) if "pathway" in match else None,
            urgency=frozenset(Urgency(u) for u in match.get("urgency", ())),
        ),
        send_to=tuple(rule["send_to"]),
        continue_=bool(rule.get("continue", False)),
        service_levels=_levels(rule.get("service_levels", {})),
    )
