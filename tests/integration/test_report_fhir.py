"""The report as FHIR R4 MeasureReports, validated with fhir.resources' R4B models (never the
R5 defaults), against the Measure definitions shipped in the package; suppressed counts are
absent with data-absent-reason `masked`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.measure import Measure
from fhir.resources.R4B.measurereport import MeasureReport

from hub.cli.main import main
from hub.operations.reports.disclosure import publish
from hub.operations.reports.fhir_export import measure_definitions, measure_reports
from hub.operations.reports.measures import GroupBy, LedgerExtract, build_report
from tests.integration.test_report_cli import db_url  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)


def fhir_export(tmp_path: Path, *extra: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "measures.json"
    result = CliRunner().invoke(
        main, ["report", "--month", "2026-11", "--fhir", str(out), "--config", "config", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def populations(report: dict, group: str) -> dict:  # type: ignore[type-arg]
    entry = next(g for g in report["group"] if g["code"]["coding"][0]["code"] == group)
    return {p["code"]["coding"][0]["code"]: p.get("count", "masked") for p in entry["population"]}


def test_the_shipped_measures_are_valid_r4b_and_each_report_points_at_one() -> None:
    measures = measure_definitions()
    urls = {Measure.model_validate(m).url for m in measures}
    assert len(measures) == 5

    empty = publish(
        build_report(
            LedgerExtract([], [], []),
            group_by=GroupBy.SITE,
            period_from=datetime(2026, 11, 1, tzinfo=UTC),
            period_to=datetime(2026, 12, 1, tzinfo=UTC),
        )
    )
    for report in measure_reports(empty, generated_at=NOW):
        assert MeasureReport.model_validate(report).measure in urls


@pytest.mark.usefixtures("db_url")
def test_exact_measure_reports_carry_the_funnel_counts_per_site(tmp_path: Path) -> None:
    bundle = fhir_export(tmp_path, "--exact", "--as", "sam")
    Bundle.model_validate(bundle)
    reports = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}

    funnel = reports["ld-pathway-funnel-20261101-20261130-site"]
    assert funnel["period"] == {"start": "2026-11-01", "end": "2026-11-30"}
    assert populations(funnel, "WYP")["identified"] == 3
    assert populations(funnel, "all")["referred"] == 3
    assessed = reports["ld-assessed-of-referred-20261101-20261130-site"]
    assert populations(assessed, "WYP") == {
        "initial-population": 3,
        "denominator": 2,
        "numerator": 2,
    }
    wyp = next(g for g in assessed["group"] if g["code"]["text"] == "WYP")
    assert wyp["measureScore"]["value"] == 1.0


@pytest.mark.usefixtures("db_url")
def test_suppressed_measure_reports_hold_no_small_count_and_no_score(tmp_path: Path) -> None:
    bundle = fhir_export(tmp_path)
    for entry in bundle["entry"]:
        report = MeasureReport.model_validate(entry["resource"])
        for group in report.group or []:
            assert group.measureScore is None
            for population in group.population or []:
                assert population.count in (None, 0)
    text = json.dumps(bundle)
    assert '"valueCode": "masked"' in text
    for leak in ("alert-", "bundle-", "REF-", "secret"):
        assert leak not in text
