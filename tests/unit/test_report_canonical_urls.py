"""The Measure definitions and the MeasureReports that point at them use canonical URLs under
the hub's own base (fhir_vocabulary.PROJECT_BASE), the same base as its identifier and code
systems, so a platform that loaded the Measures once resolves every report against them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hub.operations.reports.disclosure import publish
from hub.operations.reports.fhir_export import measure_definitions, measure_reports
from hub.operations.reports.measures import GroupBy, LedgerExtract, build_report
from hub.transforms.fhir_vocabulary import PROJECT_BASE

pytestmark = pytest.mark.unit


def _codings(value: object) -> list[dict[str, str]]:
    if isinstance(value, dict):
        found = [value] if "system" in value and "code" in value else []
        return found + [c for v in value.values() for c in _codings(v)]
    if isinstance(value, list):
        return [c for v in value for c in _codings(v)]
    return []


def test_each_shipped_measure_is_named_by_its_id_under_the_hubs_own_base() -> None:
    measures = measure_definitions()

    assert {m["id"] for m in measures} == {
        "ld-pathway-funnel",
        "ld-referred-of-identified",
        "ld-accepted-of-referred",
        "ld-assessed-of-referred",
        "ld-attended-of-referred",
    }
    for m in measures:
        assert m["url"] == f"{PROJECT_BASE}/Measure/{m['id']}"
    funnel = next(m for m in measures if m["id"] == "ld-pathway-funnel")
    stage_systems = {c["system"] for c in _codings(funnel["group"])}
    assert stage_systems == {f"{PROJECT_BASE}/CodeSystem/ld-pathway-stage"}


def test_every_measure_report_points_at_a_shipped_measure_and_codes_under_the_same_base() -> None:
    urls = {m["url"] for m in measure_definitions()}
    report = publish(
        build_report(
            LedgerExtract([], [], []),
            group_by=GroupBy.SITE,
            period_from=datetime(2026, 11, 1, tzinfo=UTC),
            period_to=datetime(2026, 12, 1, tzinfo=UTC),
        )
    )

    reports = measure_reports(report, generated_at=datetime(2026, 12, 2, tzinfo=UTC))

    assert {r["measure"] for r in reports} == urls
    systems = {c["system"] for r in reports for c in _codings(r["group"])}
    own = {s for s in systems if "terminology.hl7.org" not in s}
    assert own == {
        f"{PROJECT_BASE}/CodeSystem/ld-pathway-stage",
        f"{PROJECT_BASE}/CodeSystem/ld-report-group-site",
    }
