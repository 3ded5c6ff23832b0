"""Routing: which endpoints an alert's referral goes to. Rules are data (config/routes.yaml);
the choice is a pure function. Imports nothing from hub.adapters and does no I/O."""

from hub.routes.rules import (
    DEFAULT_RULE,
    ROUTES_SCHEMA,
    Match,
    RouteDecision,
    RouteTable,
    Rule,
    build_route_table,
    route_problems,
    select_endpoints,
)

__all__ = [
    "DEFAULT_RULE",
    "ROUTES_SCHEMA",
    "Match",
    "RouteDecision",
    "RouteTable",
    "Rule",
    "build_route_table",
    "route_problems",
    "select_endpoints",
]
