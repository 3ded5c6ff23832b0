"""`hub demo`: the whole hub in one process, no services needed.

kombu's in-memory transport stands in for RabbitMQ, SQLite for the ledger, and a pretend NHS
trust (adapters/fake_trust.py) receives the referrals and sends outcomes back. It publishes a
handful of fictional alerts and prints each one's journey. Every person here is invented.
"""

from __future__ import annotations

import io
import json
import secrets
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kombu import Connection, Queue

from hub.adapters.rabbitmq.publisher import KombuPublisher
from hub.adapters.rabbitmq.topology import declared_exchange
from hub.adapters.sql.ledger import SqlLedger
from hub.bootstrap import Hub
from hub.log import configure_logging
from hub.messages import OutcomeStatus
from hub.settings.load import load_settings
from hub.testing.fake_trust import FakeTrust, HubCredentials, Reply, inbound_token_env
from hub.wire import ALERTS_EXCHANGE, OUTCOMES_EXCHANGE

SERVICES = {
    "wy-ld": ("RXX01", "West Yorkshire Liaison and Diversion Service"),
    "leeds-crisis": ("RXX02", "Leeds Mental Health Crisis Team"),
    "leeds-dat": ("RXX03", "Leeds Drug and Alcohol Team"),
    "leeds-yjh": ("RXX04", "Leeds Youth Justice Health Team"),
}

ROUTES = """\
default: [wy-ld]
rules:
  - name: crisis
    match: {vulnerability: [self_harm_suicide_risk]}
    send_to: [leeds-crisis, wy-ld]
  - name: crisis-emergency
    match: {urgency: [emergency]}
    send_to: [leeds-crisis, wy-ld]
  - name: substance
    match: {vulnerability: [substance_misuse, alcohol_misuse]}
    send_to: [leeds-dat, wy-ld]
  - name: youth
    match: {pathway: youth}
    send_to: [leeds-yjh]
"""


def _hub_yaml(trust: FakeTrust, api_port: int) -> str:
    endpoints = "\n".join(
        f"  {name}:\n    kind: fhir-rest\n    url: {trust.url(name)}\n"
        f"    ods_code: {ods}\n    organisation_name: {org}\n    timeout_seconds: 5\n"
        f"    inbound: {{token_env: {inbound_token_env(name)}}}"
        for name, (ods, org) in SERVICES.items()
    )
    return (
        "hub: {ods_code: X26HUB, name: L&D Integration Hub, "
        f"endpoint: 'http://127.0.0.1:{api_port}/fhir'}}\n"
        "amqp: {url: 'memory://'}\n"
        f"api: {{host: 127.0.0.1, port: {api_port}}}\n"
        f"endpoints:\n{endpoints}\n"
    )


def _alert(kind: str, org: str, **fields: Any) -> dict[str, Any]:
    alert: dict[str, Any] = {
        "schema": "ld.identification-alert/1",
        "alert_id": str(uuid.uuid4()),
        "sent_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "source": {
            "kind": kind,
            "organisation": {
                "code": org,
                "name": "West Yorkshire Police"
                if kind == "custody"
                else "Leeds Magistrates' Court",
            },
            "location": "Elland Road Custody Suite" if kind == "custody" else "Court 3",
            "reference": fields.pop("reference"),
            "reported_by": {
                "role": "custody_sergeant" if kind == "custody" else "court_ld_practitioner",
                "id": "WY4411",
            },
        },
        "urgency": "routine",
        "consent": {
            "status": "given",
            "share_with_justice": True,
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600)),
            "recorded_by": "WY4411",
        },
    }
    if kind == "court":
        alert["hearing"] = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 86400)),
            "court": "Leeds Magistrates' Court",
        }
    alert.update(fields)
    return alert


def demo_alerts() -> list[tuple[str, str, dict[str, Any]]]:
    """(label, routing key, alert) for the demo run."""
    person = {
        "name": {"given": ["Sam"], "family": "Okafor"},
        "date_of_birth": "1988-04-12",
        "sex": "male",
        "nhs_number": "9991000003",
        "pnc_id": "2019/0123456E",
        "address": {"lines": ["14 Example Street", "Leeds"], "postcode": "LS11 5AB"},
    }
    youth = {
        "name": {"given": ["Casey"], "family": "Doyle"},
        "date_of_birth": "2010-02-03",
        "sex": "female",
        "nhs_number": "9991000011",
    }
    court_person = {
        "name": {"given": ["Alex"], "family": "Ward"},
        "date_of_birth": "1979-09-30",
        "sex": "other",
    }
    return [
        (
            "adult custody: mental health + drugs, consent to share",
            "custody.WYP01.identification",
            _alert(
                "custody",
                "WYP01",
                reference="WY-2026-0001",
                person=person,
                pathway="adult",
                urgency="urgent",
                vulnerabilities=[
                    {"type": "mental_health", "detail": "Hearing voices, low mood"},
                    {"type": "substance_misuse", "detail": "Daily heroin use"},
                ],
            ),
        ),
        (
            "youth custody: learning disability, consent without sharing",
            "custody.WYP01.identification",
            _alert(
                "custody",
                "WYP01",
                reference="WY-2026-0002",
                person=youth,
                pathway="youth",
                vulnerabilities=[{"type": "learning_disability", "detail": "Attends SEN school"}],
                consent={
                    "status": "given",
                    "share_with_justice": False,
                    "recorded_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)
                    ),
                    "recorded_by": "WY4411",
                },
            ),
        ),
        (
            "adult court: housing + self-harm, consent refused",
            "court.LMC01.identification",
            _alert(
                "court",
                "LMC01",
                reference="LMC-2026-7781",
                person=court_person,
                pathway="adult",
                vulnerabilities=[
                    {"type": "unstable_accommodation", "detail": "Sofa surfing"},
                    {"type": "self_harm_suicide_risk", "detail": "Recent overdose"},
                ],
                consent={
                    "status": "refused",
                    "share_with_justice": False,
                    "recorded_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)
                    ),
                    "recorded_by": "CLD22",
                },
            ),
        ),
        (
            "adult custody: emergency, lacks capacity",
            "custody.WYP01.identification",
            _alert(
                "custody",
                "WYP01",
                reference="WY-2026-0003",
                person={**person, "nhs_number": "9991000038", "pnc_id": "2008/0004321T"},
                pathway="adult",
                urgency="emergency",
                vulnerabilities=[{"type": "mental_health", "detail": "Acutely psychotic"}],
                consent={
                    "status": "lacks_capacity",
                    "share_with_justice": False,
                    "recorded_at": time.strftime(
                        "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60)
                    ),
                    "recorded_by": "WY4411",
                },
            ),
        ),
        (
            "invalid: bad NHS number, unknown vulnerability, youth pathway for an adult",
            "custody.WYP01.identification",
            _alert(
                "custody",
                "WYP01",
                reference="WY-2026-0004",
                person={**person, "nhs_number": "9991000004"},
                pathway="youth",
                vulnerabilities=[{"type": "gambling", "detail": "Debts"}],
            ),
        ),
    ]


def _replies(endpoint: str, bundle: dict[str, Any]) -> list[Reply]:
    plan = [Reply(OutcomeStatus.ACCEPTED)]
    if endpoint in ("wy-ld", "leeds-yjh"):
        plan += [
            Reply(
                OutcomeStatus.ASSESSED,
                recommendation="Fit to be interviewed with an appropriate adult present",
                note="PHQ-9 score 19; history of psychosis",
            )
        ]
    return plan


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(*, verbose: bool = False, out: Any = None) -> int:
    out = out or sys.stdout
    configure_logging(level="INFO", stream=sys.stderr if verbose else io.StringIO())
    workdir = Path(tempfile.mkdtemp(prefix="hub-demo-"))
    api_port = _free_port()
    # Each service's token for POSTing outcomes, made up for this run (secrets live in the
    # environment, which here is this dictionary).
    tokens = {name: secrets.token_urlsafe(32) for name in SERVICES}
    trust = FakeTrust(
        services=SERVICES,
        hub_base_url=f"http://127.0.0.1:{api_port}/fhir",
        replies=_replies,
        credentials={name: HubCredentials(token=token) for name, token in tokens.items()},
    ).start()
    (workdir / "hub.yaml").write_text(_hub_yaml(trust, api_port))
    (workdir / "routes.yaml").write_text(ROUTES)
    env = {inbound_token_env(name): token for name, token in tokens.items()}
    env["HUB_ID_KEY"] = secrets.token_urlsafe(32)  # a fresh key each run: nothing outlives it
    settings = load_settings(
        workdir, env={**env, "HUB_DB_URL": f"sqlite:///{workdir / 'ledger.db'}"}
    )
    ledger = SqlLedger(settings.db_url)
    hub = Hub(settings, ledger=ledger)
    outcomes: dict[str, list[dict[str, Any]]] = {}
    lock = threading.Lock()
    # The justice side's own outcome queue, bound to every organisation's outcomes.
    justice = Connection("memory://", transport_options={"polling_interval": 0.01})
    queue = Queue("justice.demo.outcomes", declared_exchange(OUTCOMES_EXCHANGE), routing_key="#")

    def collect(body: Any, message: Any) -> None:
        doc = json.loads(message.body)
        with lock:
            outcomes.setdefault(doc["alert_id"], []).append(doc)
        message.ack()

    hub.start()
    consumer = justice.Consumer([queue], on_message=lambda m: collect(None, m))
    consumer.consume()
    alerts = demo_alerts()
    publisher = KombuPublisher("memory://")
    started = time.monotonic()
    for _, key, alert in alerts:
        publisher.publish(
            exchange=ALERTS_EXCHANGE,
            routing_key=key,
            body=json.dumps(alert).encode(),
            message_id=alert["alert_id"],
        )
    expected = {a["alert_id"]: _expected_count(ledger, a["alert_id"]) for _, _, a in alerts}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            justice.drain_events(timeout=0.05)
        except TimeoutError:
            pass
        expected = {k: _expected_count(ledger, k) for k in expected}
        with lock:
            if all(len(outcomes.get(k, [])) >= n > 0 for k, n in expected.items()):
                break
    elapsed = time.monotonic() - started
    complete = _print_journeys(out, alerts, ledger, outcomes, trust)
    print(
        f"\n{len(alerts)} alerts, {len(trust.delivered())} referrals delivered, "
        f"{sum(len(v) for v in outcomes.values())} outcomes returned in {elapsed:.1f}s",
        file=out,
    )
    _print_pathway(out, settings.db_url, since=datetime.now(UTC) - timedelta(hours=1))
    consumer.cancel()
    justice.release()
    hub.stop()
    trust.stop()
    return 0 if complete else 1


def _print_pathway(out: Any, db_url: str, *, since: datetime) -> None:
    """The pathway report of what the demo just did. Exact counts: the ledger is the demo's
    own, of made-up alerts, deleted with its temporary directory."""
    from hub.adapters.sql.reports import SqlReportReader
    from hub.operations.reports.disclosure import publish
    from hub.operations.reports.measures import GroupBy, build_report
    from hub.operations.reports.render import summary_lines

    until = datetime.now(UTC) + timedelta(hours=1)
    reader = SqlReportReader(db_url)
    try:
        extract = reader.extract(since, until)
    finally:
        reader.close()
    report = build_report(extract, group_by=GroupBy.SITE, period_from=since, period_to=until)
    print("", file=out)
    for line in summary_lines(publish(report, exact=True)):
        print(line, file=out)


def _expected_count(ledger: SqlLedger, alert_id: str) -> int:
    """Outcomes the justice side should see: rejected (1) or, per referral, received +
    the trust's replies."""
    alert = ledger.get_alert(alert_id)
    if alert is None:
        return 1 if any(e.event == "alert_rejected" for e in ledger.journey(alert_id)) else 0
    total = 0
    for referral in ledger.referrals_for(alert_id):
        total += 1 + len(_replies(referral.endpoint, {}))
    return total


def _print_journeys(
    out: Any,
    alerts: list[tuple[str, str, dict[str, Any]]],
    ledger: SqlLedger,
    outcomes: dict[str, list[dict[str, Any]]],
    trust: FakeTrust,
) -> bool:
    complete = True
    for label, _, alert in alerts:
        alert_id = alert["alert_id"]
        print(f"\n== {label}\n   alert {alert_id} ({alert['source']['reference']})", file=out)
        print("   received", file=out)
        events = ledger.journey(alert_id)
        rejected = next((e for e in events if e.event == "alert_rejected"), None)
        if rejected is not None:
            print("   → rejected:", file=out)
            for p in rejected.detail.get("problems", []):
                print(f"       - {p['path']}: {p['problem']}", file=out)
        else:
            print("   → validated", file=out)
            routed = next((e for e in events if e.event == "referral_routed"), None)
            if routed:
                print(f"   → referral built; rules {', '.join(routed.detail['rules'])}", file=out)
            for referral in ledger.referrals_for(alert_id):
                print(
                    f"   → delivered to {referral.endpoint} ({referral.state}, "
                    f"{referral.attempts} attempt(s), Bundle {referral.bundle_id})",
                    file=out,
                )
        got = sorted(outcomes.get(alert_id, []), key=lambda o: o["at"])
        for o in got:
            service = o["service"]["name"] if o.get("service") else "-"
            extra = f" detail={json.dumps(o['detail'])}" if o.get("detail") else ""
            reasons = f" ({len(o.get('reasons', []))} reasons)" if o.get("reasons") else ""
            print(
                f"   ← outcome to justice: {o['status']} from {service}{reasons}{extra}", file=out
            )
        if not got:
            complete = False
            print("   ← NO OUTCOME RETURNED", file=out)
    return complete
