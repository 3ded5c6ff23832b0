"""The published report as FHIR R4 `MeasureReport`s (summary, one per measure and period, a
`group` per report group), against the `Measure` definitions shipped in
hub/operations/reports/fhir/.

Pure: the published (suppressed unless exact) figures and the time come in. A suppressed count
has no value: `population.count` is absent and carries the data-absent-reason `masked`, so a
platform loading it sees "withheld", never a made-up number.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from hub.operations.reports.measures import RATES, STAGES
from hub.transforms.fhir_vocabulary import PROJECT_BASE

# Canonical URLs under the hub's own base, like its identifier and code systems
# (fhir_vocabulary.PROJECT_BASE); the shipped Measure files carry the same (a test holds them).
MEASURE_BASE = f"{PROJECT_BASE}/Measure/"
STAGE_SYSTEM = f"{PROJECT_BASE}/CodeSystem/ld-pathway-stage"
GROUP_SYSTEM = f"{PROJECT_BASE}/CodeSystem/ld-report-group-"  # + grouped_by
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
FUNNEL = "ld-pathway-funnel"


def measure_name(rate: str) -> str:
    return "ld-" + rate.replace("_", "-")


def measure_definitions() -> list[dict[str, Any]]:
    """The shipped `Measure` resources, one per file in hub/operations/reports/fhir/."""
    folder = resources.files("hub.operations.reports") / "fhir"
    return [
        json.loads(f.read_text(encoding="utf-8"))
        for f in sorted(folder.iterdir(), key=lambda f: f.name)
        if f.name.endswith(".json")
    ]


def _population(code: str, count: Any, *, system: str) -> dict[str, Any]:
    population: dict[str, Any] = {"code": {"coding": [{"system": system, "code": code}]}}
    if isinstance(count, int):
        population["count"] = count
    else:
        population["_count"] = {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
    return population


def _period(report: dict[str, Any]) -> dict[str, str]:
    start = datetime.fromisoformat(report["period"]["from"])
    end = datetime.fromisoformat(report["period"]["to"]) - timedelta(days=1)
    return {"start": start.date().isoformat(), "end": end.date().isoformat()}


def measure_reports(report: dict[str, Any], *, generated_at: datetime) -> list[dict[str, Any]]:
    period = _period(report)
    by = report["grouped_by"]
    tag = f"{period['start'].replace('-', '')}-{period['end'].replace('-', '')}-{by}"
    groups = [*report["funnel"], {"group": "all", **report["total"]}]

    def base(name: str) -> dict[str, Any]:
        return {
            "resourceType": "MeasureReport",
            "id": f"{name}-{tag}",
            "status": "complete",
            "type": "summary",
            "measure": MEASURE_BASE + name,
            "date": generated_at.isoformat(),
            "period": period,
            "improvementNotation": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                        "code": "increase",
                    }
                ]
            },
        }

    def group_code(name: str) -> dict[str, Any]:
        return {"coding": [{"system": GROUP_SYSTEM + by, "code": name}], "text": name}

    funnel = base(FUNNEL)
    funnel["group"] = [
        {
            "code": group_code(g["group"]),
            "population": [_population(s, g[s], system=STAGE_SYSTEM) for s in STAGES],
        }
        for g in groups
    ]
    out = [funnel]
    plots = {p["rate"]: p for p in report["variation"]}
    for rate, numerator, denominator in RATES:
        measure = base(measure_name(rate))
        scores = {p["group"]: p.get("rate") for p in plots[rate]["points"]}
        scores["all"] = plots[rate]["overall"]
        measure["group"] = []
        for g in groups:
            entry: dict[str, Any] = {
                "code": group_code(g["group"]),
                "population": [
                    _population("initial-population", g["identified"], system=POPULATION_SYSTEM),
                    _population("denominator", g[denominator], system=POPULATION_SYSTEM),
                    _population("numerator", g[numerator], system=POPULATION_SYSTEM),
                ],
            }
            if scores.get(g["group"]) is not None:
                entry["measureScore"] = {"value": scores[g["group"]]}
            measure["group"].append(entry)
        out.append(measure)
    return out


def measure_report_bundle(report: dict[str, Any], *, generated_at: datetime) -> dict[str, Any]:
    """The MeasureReports as one FHIR `collection` Bundle, to load in one go."""
    reports = measure_reports(report, generated_at=generated_at)
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": generated_at.isoformat(),
        "entry": [
            {"fullUrl": f"urn:ld-hub:MeasureReport/{r['id']}", "resource": r} for r in reports
        ],
    }
