"""`hub report` on the small seeded ledger (tests/integration/test_report_reads.py): table, CSV,
JSON and a self-contained HTML file, suppressed by default; `--exact` needs an operator and is
written to the audit log before anything is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from hub.adapters.sql.failed_store import SqlFailedStore
from hub.adapters.sql.ledger import SqlLedger
from hub.cli.main import main
from tests.integration.test_report_reads import seed

pytestmark = pytest.mark.integration


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    ledger = SqlLedger(url)
    seed(ledger)
    ledger.close()
    SqlFailedStore(url).close()
    monkeypatch.setenv("HUB_DB_URL", url)
    monkeypatch.delenv("HUB_OPERATOR", raising=False)
    monkeypatch.delenv("HUB_REPORT_DB_URL", raising=False)
    return url


def hub(*args: str) -> Result:
    return CliRunner().invoke(main, ["report", *args, "--config", "config"])


def audit_rows(url: str) -> list[tuple[str, str, str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, by, reason FROM hub_audit_log")).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_the_json_report_is_suppressed_and_holds_no_id(db_url: str) -> None:
    result = hub("--month", "2026-11", "--format", "json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["suppressed"] is True
    assert report["total"]["identified"] == "*"
    assert [r["group"] for r in report["funnel"]] == ["LMC01", "WYP"]
    for leak in ("alert-", "bundle-", "REF-", "req-", "secret"):
        assert leak not in result.output


def test_the_table_and_csv_show_the_funnel_by_service(db_url: str) -> None:
    table = hub("--from", "2026-11-01", "--to", "2026-11-30", "--by", "service")
    csv = hub("--month", "2026-11", "--by", "service", "--format", "csv")

    assert table.exit_code == 0, table.output
    assert "Pathway funnel" in table.output and "drugs" in table.output
    assert csv.exit_code == 0, csv.output
    lines = csv.output.splitlines()
    assert lines[0] == "section,group,measure,value"
    assert "funnel,ld,identified,*" in lines
    assert "overdue,ld,share," in lines  # withheld: both sides are small


def test_exact_counts_need_an_operator_and_are_audited_first(db_url: str) -> None:
    refused = hub("--month", "2026-11", "--exact", "--format", "json")
    assert refused.exit_code != 0
    assert audit_rows(db_url) == []

    shown = hub(
        "--month",
        "2026-11",
        "--exact",
        "--format",
        "json",
        "--as",
        "sam",
        "--reason",
        "commissioning review",
    )

    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["total"]["identified"] == 4
    assert audit_rows(db_url) == [
        ("report_exact", "sam", "commissioning review (2026-11-01..2026-12-01 by site)")
    ]


def test_the_exact_reports_audit_reason_is_scrubbed_and_bounded_like_a_log_line(
    db_url: str,
) -> None:
    reason = "asked about 943 476 5919, born 1990-01-02, of LS1 4AP:" + " very long" * 100

    shown = hub(
        "--month", "2026-11", "--exact", "--format", "json", "--as", "sam", "--reason", reason
    )

    assert shown.exit_code == 0, shown.output
    ((action, by, stored),) = audit_rows(db_url)
    assert (action, by) == ("report_exact", "sam")
    assert stored.startswith("asked about [redacted], born [redacted], of [redacted]: very long")
    assert stored.endswith("more] (2026-11-01..2026-12-01 by site)")
    assert len(stored) < 250
    for leak in ("943", "5919", "1990", "LS1"):
        assert leak not in stored


def test_the_html_report_is_self_contained_with_its_funnel_plots(
    db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.html"

    result = hub("--month", "2026-11", "--html", str(out))

    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert html.count("<svg") == 5  # the stage bars and one funnel plot per rate
    assert "assessed_of_referred" in html
    for fetch in ("http://", "https://", "src=", "<script", "<link", "url("):
        assert fetch not in html
    for leak in ("alert-", "bundle-", "REF-", "secret"):
        assert leak not in html


def test_a_month_and_days_together_are_refused(db_url: str) -> None:
    result = hub("--month", "2026-11", "--from", "2026-11-01", "--to", "2026-11-02")
    assert result.exit_code == 2


def test_refresh_fills_the_summary_then_runs_incrementally_and_the_report_is_unchanged(
    db_url: str,
) -> None:
    before = hub("--month", "2026-11", "--format", "json", "--by", "vulnerability")

    first, second = hub("refresh"), hub("refresh")

    assert first.exit_code == 0, first.output
    assert "(full): 5 alerts summarised" in first.output
    assert second.exit_code == 0, second.output
    assert "(incremental): 0 alerts summarised" in second.output
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM hub_report_alerts")).scalar() == 5
    engine.dispose()
    after = hub("--month", "2026-11", "--format", "json", "--by", "vulnerability")
    assert after.exit_code == 0 and after.output == before.output
