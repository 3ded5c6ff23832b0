"""config/prometheus-rules.yml: loads, and every rule's expression reads a metric the hub
exports (promtool is not a dependency; this catches a renamed metric leaving a rule dead)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hub.adapters.metrics import EXPORTED
from hub.adapters.rabbitmq.topology import Topology

pytestmark = pytest.mark.unit

RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus-rules.yml"
PROMQL_WORDS = {"increase", "rate", "sum", "by", "max", "min", "and", "or", "unless", "on"}


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    return {w for w in re.findall(r"[a-z_][a-z0-9_]*", without_labels) if w not in PROMQL_WORDS}


def test_the_rules_file_loads_as_prometheus_rule_groups() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert doc["groups"] and all(g["name"] and g["rules"] for g in doc["groups"])
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["alert"] and rule["expr"] and rule["annotations"]["summary"]


def test_every_rule_reads_only_metrics_the_hub_exports() -> None:
    for rule in rules():
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        assert names <= set(EXPORTED), (rule["alert"], names - set(EXPORTED))


def test_the_rules_cover_failed_messages_dlq_depth_queue_age_and_open_circuits() -> None:
    used = set().union(*(metric_names(r["expr"]) for r in rules()))
    assert {
        "hub_failed_messages",
        "hub_queue_depth",
        "hub_queue_oldest_message_age_seconds",
        "hub_circuit_state",
    } <= used
    assert any("hub\\\\.dlq" in r["expr"] or "hub\\.dlq" in r["expr"] for r in rules())


def test_each_queue_age_rule_selects_hub_queues_that_report_an_age() -> None:
    # Every declared queue reports an age except the retry queues (docs/operations.md,
    # "Queue depth and age"); a rule selecting none of the others could never fire.
    queues = Topology(endpoints=["wy-ld"], retry_delays=[10]).all_queue_names()
    for rule in rules():
        if "hub_queue_oldest_message_age_seconds" not in rule["expr"]:
            continue
        matcher = re.search(r'queue(=~|=)"([^"]+)"', rule["expr"])
        assert matcher, rule["alert"]
        pattern = matcher.group(2).replace("\\\\", "\\")
        if matcher.group(1) == "=":
            pattern = re.escape(pattern)
        selected = [q for q in queues if re.fullmatch(pattern, q)]
        assert selected, (rule["alert"], pattern)
        assert not [q for q in selected if q.startswith("hub.retry.")], rule["alert"]
