"""The metrics adapter (Prometheus, one registry per hub), its in-memory fake, the queue watch
and the Dispatcher's retry/dead-letter counts, without services."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.adapters.memory.metrics import MemoryMetrics
from hub.adapters.memory.publisher import MemoryPublisher
from hub.adapters.metrics import EXPORTED, PrometheusMetrics
from hub.errors import InvalidMessage, PermanentError, TransientError
from hub.messages import Problem
from hub.operations.queue_watch import QueueWatch
from hub.pipeline import Dispatcher, RetryPolicy
from hub.ports import Metrics
from hub.security.provenance import Provenance
from tests.fixtures.stages import DELIVERY_ENVELOPE, FailingStage

pytestmark = pytest.mark.unit


def samples(metrics: PrometheusMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: PrometheusMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_counters_are_exported_with_their_labels() -> None:
    m = PrometheusMetrics()
    m.alert_received("custody")
    m.alert_received("custody")
    m.alert_rejected("court")
    m.referral_delivered("wy-ld")
    m.referral_failed("leeds-dat")
    m.retry_scheduled("deliver", "wy-ld")
    m.dead_lettered("intake", None)

    assert value(m, "hub_alerts_received_total", source_kind="custody") == 2
    assert value(m, "hub_alerts_rejected_total", source_kind="court") == 1
    assert value(m, "hub_referrals_delivered_total", endpoint="wy-ld") == 1
    assert value(m, "hub_referrals_failed_total", endpoint="leeds-dat") == 1
    assert value(m, "hub_retries_total", stage="deliver", endpoint="wy-ld") == 1
    assert value(m, "hub_dead_letters_total", stage="intake", endpoint="") == 1


def test_delivery_latency_is_a_histogram_per_endpoint() -> None:
    m = PrometheusMetrics()
    m.delivery_attempt("wy-ld", 0.2)
    m.delivery_attempt("wy-ld", 3.0)

    assert value(m, "hub_delivery_attempt_seconds_count", endpoint="wy-ld") == 2
    assert value(m, "hub_delivery_attempt_seconds_sum", endpoint="wy-ld") == pytest.approx(3.2)
    assert value(m, "hub_delivery_attempt_seconds_bucket", endpoint="wy-ld", le="0.25") == 1


def test_two_hubs_in_one_process_do_not_share_counts() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.alert_received("custody")

    assert value(first, "hub_alerts_received_total", source_kind="custody") == 1
    assert value(second, "hub_alerts_received_total", source_kind="custody") is None


def test_gauges_report_depth_age_store_size_and_overdue() -> None:
    m = PrometheusMetrics()
    m.queue_depth("hub.dlq.deliver", 3)
    m.queue_oldest_age("hub.dlq.deliver", 42.5)
    m.failed_messages(7)
    m.overdue_referrals(0)

    assert value(m, "hub_queue_depth", queue="hub.dlq.deliver") == 3
    assert value(m, "hub_queue_oldest_message_age_seconds", queue="hub.dlq.deliver") == 42.5
    assert value(m, "hub_failed_messages") == 7
    assert value(m, "hub_overdue_referrals") == 0


def test_an_unknown_age_removes_the_series_instead_of_reporting_zero() -> None:
    m = PrometheusMetrics()
    m.queue_oldest_age("hub.alerts.custody", 10)
    m.queue_oldest_age("hub.alerts.custody", None)
    m.queue_oldest_age("hub.alerts.court", None)  # never reported: no error

    assert value(m, "hub_queue_oldest_message_age_seconds", queue="hub.alerts.custody") is None


def test_circuit_state_marks_the_current_state_one_and_the_others_zero() -> None:
    m = PrometheusMetrics()
    m.circuit_state("wy-ld", "closed")
    m.circuit_state("wy-ld", "open")

    assert value(m, "hub_circuit_state", endpoint="wy-ld", state="open") == 1
    assert value(m, "hub_circuit_state", endpoint="wy-ld", state="closed") == 0
    m.circuit_state("wy-ld", "half_open")
    assert value(m, "hub_circuit_state", endpoint="wy-ld", state="open") == 0
    assert value(m, "hub_circuit_state", endpoint="wy-ld", state="half_open") == 1


def test_every_exported_name_appears_once_something_is_recorded() -> None:
    m = PrometheusMetrics()
    for record in (
        lambda: m.alert_received("custody"),
        lambda: m.alert_rejected("custody"),
        lambda: m.referral_delivered("e"),
        lambda: m.referral_failed("e"),
        lambda: m.delivery_attempt("e", 0.1),
        lambda: m.retry_scheduled("deliver", "e"),
        lambda: m.dead_lettered("deliver", "e"),
        lambda: m.queue_depth("q", 1),
        lambda: m.queue_oldest_age("q", 1),
        lambda: m.circuit_state("e", "closed"),
        lambda: m.thread_restarted("intake-custody-0"),
        lambda: m.report_refresh("done"),
    ):
        record()
    names = {name for name, _ in samples(m)}
    for exported in EXPORTED:
        assert any(n == exported or n.startswith(exported + "_") for n in names), exported


def test_the_memory_fake_records_what_the_adapter_would() -> None:
    m = MemoryMetrics()
    m.alert_received("custody")
    m.dead_lettered("deliver", "wy-ld")
    m.delivery_attempt("wy-ld", 0.5)
    m.queue_depth("hub.dlq.intake", 2)
    m.circuit_state("wy-ld", "open")

    assert m.counts[("alerts_received", "custody")] == 1
    assert m.counts[("dead_letters", "deliver", "wy-ld")] == 1
    assert m.latencies == {"wy-ld": [0.5]}
    assert m.gauges[("queue_depth", "hub.dlq.intake")] == 2
    assert m.circuits == {"wy-ld": "open"}
    assert b"alerts_received custody 1" in m.exposition()[0]


# --- the queue watch ----------------------------------------------------------------------------


def test_queue_watch_samples_depths_ages_and_the_failed_store() -> None:
    m = MemoryMetrics()
    watch = QueueWatch(
        metrics=m,
        queues=["hub.dlq.intake", "hub.alerts.custody"],
        depths=lambda queues: {q: 4 for q in queues},
        ages=lambda queues, now: {"hub.dlq.intake": now - 1000.0},
        failed_count=lambda: 5,
        wall_clock=lambda: 1030.0,
    )
    m.queue_oldest_age("hub.alerts.custody", 99)  # stale: now unknown, so removed

    watch.sample()

    assert m.gauges[("queue_depth", "hub.alerts.custody")] == 4
    assert m.gauges[("queue_oldest_age", "hub.dlq.intake")] == 30.0
    assert ("queue_oldest_age", "hub.alerts.custody") not in m.gauges
    assert m.gauges[("failed_messages",)] == 5


def test_queue_watch_keeps_sampling_the_rest_when_the_broker_is_away() -> None:
    m = MemoryMetrics()

    def no_broker(queues: Sequence[str]) -> Mapping[str, int]:
        raise TransientError("broker unreachable")

    watch = QueueWatch(metrics=m, queues=["q"], depths=no_broker, failed_count=lambda: 1)
    watch.sample()

    assert m.gauges == {("failed_messages",): 1}


# --- the Dispatcher counts retries and dead letters --------------------------------------------


@pytest.mark.parametrize(
    ("error", "key"),
    [
        (TransientError("HTTP 503", endpoint="wy-ld"), ("retries", "deliver", "wy-ld")),
        (PermanentError("HTTP 400", endpoint="wy-ld"), ("dead_letters", "deliver", "wy-ld")),
        (InvalidMessage([Problem("$", "bad")]), ("dead_letters", "deliver", "")),
    ],
)
def test_the_dispatcher_counts_each_retry_and_dead_letter(
    error: Exception, key: tuple[str, ...]
) -> None:
    metrics: Metrics = MemoryMetrics()
    dispatcher = Dispatcher(
        FailingStage(error, name="deliver"),
        publisher=MemoryPublisher(),
        retry=RetryPolicy(),
        provenance=Provenance(b"k" * 32),
        metrics=metrics,
    )

    dispatcher(DELIVERY_ENVELOPE)

    assert isinstance(metrics, MemoryMetrics)
    assert dict(metrics.counts) == {key: 1}


# --- configuration: the management API is optional ---------------------------------------------


def test_amqp_management_url_is_optional_and_checked(tmp_path: Path) -> None:
    from hub.errors import ConfigError
    from hub.settings.load import load_settings
    from tests.unit.test_settings import HUB_YAML, write

    for name in ("none", "api", "bad"):
        (tmp_path / name).mkdir()
    assert load_settings(write(tmp_path / "none"), env={}).management_url is None
    with_api = HUB_YAML + "amqp: {management_url: 'http://rabbit:15672'}\n"
    settings = load_settings(write(tmp_path / "api", hub=with_api), env={})
    assert settings.management_url == "http://rabbit:15672"
    with pytest.raises(ConfigError, match="management_url"):
        load_settings(
            write(tmp_path / "bad", hub=HUB_YAML + "amqp: {management_url: rabbit}\n"), env={}
        )
