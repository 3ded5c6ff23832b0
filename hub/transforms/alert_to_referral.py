"""Alert → FHIR R4 referral: one `ld.identification-alert/1` becomes one BaRS-shaped message Bundle.

Pure: no clock, no uuid4, no environment, no I/O, no logging. Ids are keyed
(hub.transforms.referral_ids: HMAC-SHA256 under the hub's id key, which comes in with `hub`) over
the alert id and the endpoint, times come from the alert, so a redelivery is the same Bundle byte
for byte, and a service that knows the alert id still cannot compute the ids another service was
sent.

BaRS has no Liaison and Diversion use case (its use-case categories cover UEC/111/999/CAS/pharmacy/
ambulance/GP/e-RS only), so this Bundle is BaRS-*shaped*, not BaRS-*conformant*: it follows the
referral message pattern (Bundle type=message, MessageHeader first, `servicerequest-request`,
reason `new`, focus → ServiceRequest, Consent) but leaves out what BaRS requires and an alert
cannot supply (CarePlan, Practitioner, PractitionerRole, HealthcareService, a use-case category).
Only the Bundle claims a BaRS profile (BARSBundleMessage, as agreed); the resources claim UK Core.

Mapping (the review checklist). SR = ServiceRequest, MH = MessageHeader, Org = Organization.

| alert field                | FHIR path                                                        |
|----------------------------|------------------------------------------------------------------|
| alert_id                   | SR.identifier (system ALERT_ID_SYSTEM); seeds every keyed id     |
| sent_at                    | Bundle.timestamp, every meta.lastUpdated, SR.authoredOn,         |
|                            | SR.note.time                                                     |
| source.kind                | Encounter.status (custody: in-progress, court: planned);         |
|                            | Encounter.identifier system (custody record / court case)        |
| source.organisation        | source Org (identifier ODS_SYSTEM, name) = SR.requester,         |
|                            | Encounter.serviceProvider, Consent.organization, SR.note.author  |
| source.location            | Encounter.location[0].location.display                           |
| source.reference           | Encounter.identifier.value                                       |
| source.reported_by         | not mapped: no Practitioner in the Bundle (staff identifier)     |
| person.nhs_number          | Patient.identifier (NHS_NUMBER_SYSTEM) + verification-status     |
|                            | extension `number-present-but-not-traced` (the hub never traces) |
| person.pnc_id              | Patient.identifier (PNC_ID_SYSTEM, a project system)             |
| person.name                | Patient.name[0].given / .family                                  |
| person.date_of_birth       | Patient.birthDate                                                |
| person.sex                 | Patient.gender (male/female/other/unknown map 1:1)               |
| person.address             | Patient.address[0].line / .postalCode                            |
| pathway                    | SR.category[1] (PATHWAY_SYSTEM adult/youth), where BaRS puts its |
|                            | use-case category                                                |
| vulnerabilities[].type     | SR.reasonCode[] (text = label; SNOMED coding where known, below) |
| vulnerabilities[].detail   | SR.note[] ("<label>: <detail>"); nowhere else (never reasonCode) |
|                            | a blank detail adds no note (FHIR strings may not be empty)      |
| urgency                    | SR.priority (routine→routine, urgent→urgent, emergency→stat)     |
| consent.status             | Consent.status + Consent.provision.type (table below)            |
| consent.share_with_justice | Consent.provision.provision[0]: type permit/deny, actor IRCP →   |
|                            | source Org (the justice agency as information recipient)         |
| consent.recorded_at        | Consent.dateTime                                                 |
| consent.recorded_by        | not mapped: no Practitioner in the Bundle (staff identifier)     |
| hearing.at                 | SR.occurrenceDateTime, Encounter.period.start                    |
| hearing.court              | Encounter.location[1] when it differs from source.location       |
| Recipient                  | MH.destination (endpoint, receiver → receiving Org),             |
|                            | SR.performer; receiving Org (ODS code, name)                     |
| HubIdentity                | MH.source.endpoint, MH.sender → hub Org (ODS code, name)         |

Fixed values: SR.status active, SR.intent plan, SR.category[0] `referral` (BaRS
message-category-servicerequest), SR.code SNOMED 306206005 "Referral to service": no SNOMED
concept for a referral to a Liaison and Diversion service was found (reference notes §4), so
the generic one is used. Encounter.class v3-ActCode FLD "field": custody suites and courts are
neither healthcare settings nor home. MH.eventCoding `servicerequest-request`, MH.reason `new`,
MH.definition the BaRS referral MessageDefinition. MH.destination.endpoint is
`https://fhir.nhs.uk/Id/dos-service-id|<service_id>` when the recipient has a DoS id, else
`ENDPOINT_SYSTEM|<endpoint name>`. Bundle.meta.versionId (BaRS: application version) is left
out: it would make the output depend on the release, not only on the alert.

Vulnerability → SR.reasonCode: text is always the type's label (VULNERABILITY_LABELS); a SNOMED CT
coding is added where the reference notes (§4) give one that fits. International displays:
confirm against the UK edition before release. No L&D-specific concepts were found.

| type                          | SNOMED CT coding                                               |
|-------------------------------|----------------------------------------------------------------|
| mental_health                 | 74732009 Mental disorder                                       |
| learning_disability           | 110359009 Intellectual disability                              |
| autism                        | none found: text only                                          |
| substance_misuse              | 66214007 Substance abuse (UK preferred term: substance misuse) |
| alcohol_misuse                | 415685003 Suspected alcohol abuse (BaRS safeguarding codes)    |
| physical_health               | none fits (too broad): text only                               |
| unstable_accommodation        | none found (710911006 is a referral, not a finding): text only |
| self_harm_suicide_risk        | 401206008 At risk for deliberate self harm (BaRS safeguarding) |
| domestic_abuse                | none found: text only                                          |
| financial_hardship            | none found: text only                                          |
| speech_language_communication | none found: text only                                          |

Consent (UKCore-Consent; scope patient-privacy, category BaRS DRC "Direct Care", policyRule
v3-ActCode IMPLIED as in the BaRS example; provision.type is what is in force now):

| consent.status | Consent.status | provision.type | also                                     |
|----------------|----------------|----------------|------------------------------------------|
| given          | active         | permit         |                                          |
| refused        | rejected       | deny           |                                          |
| not_asked      | proposed       | deny           | nothing agreed yet, so nothing permitted |
| lacks_capacity | active         | permit         | Consent.policy.uri = Mental Capacity Act |
|                |                |                | 2005 s.4 (best interests): a decision    |
|                |                |                | made for the person, not their consent;  |
|                |                |                | no extension needed                      |
"""

from __future__ import annotations

from typing import Any

import orjson

from hub.messages import (
    Alert,
    Consent,
    ConsentStatus,
    HubIdentity,
    Recipient,
    SourceKind,
    Urgency,
    VulnerabilityType,
)
from hub.transforms.fhir_vocabulary import (
    ALERT_ID_SYSTEM,
    BARS_BUNDLE_PROFILE,
    BEST_INTERESTS_POLICY,
    DOS_SERVICE_SYSTEM,
    ENDPOINT_SYSTEM,
    HL7_V3_ACT_CODE,
    MESSAGE_EVENTS_SYSTEM,
    MESSAGE_REASON_SYSTEM,
    NHS_NUMBER_SYSTEM,
    NHS_NUMBER_VERIFICATION_SYSTEM,
    NHS_NUMBER_VERIFICATION_URL,
    ODS_SYSTEM,
    PATHWAY_SYSTEM,
    PNC_ID_SYSTEM,
    REFERRAL_CODE,
    REFERRAL_DEFINITION,
    SNOMED,
    SOURCE_REFERENCE_SYSTEMS,
    SR_CATEGORY_SYSTEM,
    UKCORE_PROFILE,
    VULNERABILITY_LABELS,
    VULNERABILITY_SNOMED,
    coding,
    fhir_instant,
    fhir_meta,
    reference,
)
from hub.transforms.referral_ids import Role, resource_id

_PRIORITY = {Urgency.ROUTINE: "routine", Urgency.URGENT: "urgent", Urgency.EMERGENCY: "stat"}

_GENDER = {"male": "male", "female": "female", "other": "other", "unknown": "unknown"}

_CONSENT = {  # consent.status → (Consent.status, provision.type)
    ConsentStatus.GIVEN: ("active", "permit"),
    ConsentStatus.REFUSED: ("rejected", "deny"),
    ConsentStatus.NOT_ASKED: ("proposed", "deny"),
    ConsentStatus.LACKS_CAPACITY: ("active", "permit"),
}


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    """The wire form: canonical JSON (sorted keys, no spaces), UTF-8: byte for byte what
    `json.dumps(bundle, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes
    (a test holds the two together on arbitrary text), in a tenth of the time. A Bundle holds
    only strings, booleans, lists and objects (the contracts have no numbers), so orjson's
    one difference, a non-finite float written as null, cannot arise; a text that is not
    valid Unicode (a lone surrogate) is refused, as the UTF-8 encoding refused it before."""
    try:
        return orjson.dumps(bundle, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"bundle cannot be serialised: {exc}") from None


def organization_resource(resource_id: str, ods_code: str, name: str, at: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": resource_id,
        "meta": fhir_meta(UKCORE_PROFILE + "Organization", at),
        "identifier": [{"system": ODS_SYSTEM, "value": ods_code}],
        "name": name,
    }


def build_referral(alert: Alert, *, recipient: Recipient, hub: HubIdentity) -> dict[str, Any]:
    """The referral message Bundle for one alert and one recipient, as a JSON-ready dict."""
    key = hub.id_key()
    ids = {role: resource_id(key, alert.alert_id, recipient.endpoint, role) for role in Role}
    at = fhir_instant(alert.sent_at)
    resources = [
        message_header(ids, recipient, hub, at),
        _service_request(alert, ids, at),
        _patient(alert, ids[Role.PATIENT], at),
        consent_resource(alert.consent, ids, at),
        _encounter(alert, ids, at),
        organization_resource(
            ids[Role.SOURCE_ORG],
            alert.source.organisation.code,
            alert.source.organisation.name,
            at,
        ),
        organization_resource(
            ids[Role.RECEIVER_ORG], recipient.ods_code, recipient.organisation_name, at
        ),
        organization_resource(ids[Role.HUB_ORG], hub.ods_code, hub.name, at),
    ]
    return {
        "resourceType": "Bundle",
        "id": ids[Role.BUNDLE],
        "meta": fhir_meta(BARS_BUNDLE_PROFILE, at),
        "type": "message",
        "timestamp": at,
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }


def message_header(
    ids: dict[Role, str],
    recipient: Recipient,
    hub: HubIdentity,
    at: str,
    *,
    reason: tuple[str, str] = ("new", "New"),
    definition: str = REFERRAL_DEFINITION,
) -> dict[str, Any]:
    if recipient.service_id:
        destination = f"{DOS_SERVICE_SYSTEM}|{recipient.service_id}"
    else:
        destination = f"{ENDPOINT_SYSTEM}|{recipient.endpoint}"
    return {
        "resourceType": "MessageHeader",
        "id": ids[Role.MESSAGE_HEADER],
        "meta": fhir_meta(UKCORE_PROFILE + "MessageHeader", at),
        "eventCoding": coding(MESSAGE_EVENTS_SYSTEM, "servicerequest-request"),
        "destination": [{"endpoint": destination, "receiver": reference(ids[Role.RECEIVER_ORG])}],
        "sender": reference(ids[Role.HUB_ORG]),
        "source": {"endpoint": hub.endpoint},
        "reason": {"coding": [coding(MESSAGE_REASON_SYSTEM, *reason)]},
        "focus": [reference(ids[Role.SERVICE_REQUEST])],
        "definition": definition,
    }


def _reason_code(vulnerability_type: VulnerabilityType) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": VULNERABILITY_LABELS[vulnerability_type]}
    snomed = VULNERABILITY_SNOMED.get(vulnerability_type)
    if snomed is not None:
        concept["coding"] = [coding(SNOMED, *snomed)]
    return concept


def _service_request(alert: Alert, ids: dict[Role, str], at: str) -> dict[str, Any]:
    source_org = reference(ids[Role.SOURCE_ORG])
    notes = [
        {
            "authorReference": source_org,
            "time": at,
            "text": f"{VULNERABILITY_LABELS[v.type]}: {v.detail.strip()}",
        }
        for v in alert.vulnerabilities
        if v.detail.strip()  # FHIR strings may not be empty; a blank detail says nothing
    ]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": ids[Role.SERVICE_REQUEST],
        "meta": fhir_meta(UKCORE_PROFILE + "ServiceRequest", at),
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": alert.alert_id}],
        "status": "active",
        "intent": "plan",
        "category": [
            {"coding": [coding(SR_CATEGORY_SYSTEM, "referral", "Transfer of Care")]},
            {"coding": [coding(PATHWAY_SYSTEM, str(alert.pathway))]},
        ],
        "priority": _PRIORITY[alert.urgency],
        "code": {"coding": [coding(*REFERRAL_CODE)]},
        "subject": reference(ids[Role.PATIENT]),
        "encounter": reference(ids[Role.ENCOUNTER]),
        "authoredOn": at,
        "requester": source_org,
        "performer": [reference(ids[Role.RECEIVER_ORG])],
        "reasonCode": [_reason_code(v.type) for v in alert.vulnerabilities],
        "supportingInfo": [reference(ids[Role.CONSENT])],
    }
    if alert.hearing is not None:
        resource["occurrenceDateTime"] = fhir_instant(alert.hearing.at)
    if notes:
        resource["note"] = notes
    return resource


def _patient(alert: Alert, patient_id: str, at: str) -> dict[str, Any]:
    person = alert.person
    identifiers: list[dict[str, Any]] = []
    if person.nhs_number:
        verification = coding(
            NHS_NUMBER_VERIFICATION_SYSTEM,
            "number-present-but-not-traced",
            "Number present but not traced",
        )
        identifiers.append(
            {
                "extension": [
                    {
                        "url": NHS_NUMBER_VERIFICATION_URL,
                        "valueCodeableConcept": {"coding": [verification]},
                    }
                ],
                "system": NHS_NUMBER_SYSTEM,
                "value": person.nhs_number,
            }
        )
    if person.pnc_id:
        identifiers.append({"system": PNC_ID_SYSTEM, "value": person.pnc_id})
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient_id,
        "meta": fhir_meta(UKCORE_PROFILE + "Patient", at),
    }
    if identifiers:
        resource["identifier"] = identifiers
    resource["name"] = [{"family": person.name.family, "given": list(person.name.given)}]
    resource["gender"] = _GENDER[person.sex]
    resource["birthDate"] = person.date_of_birth.isoformat()
    if person.address is not None:
        resource["address"] = [
            {"line": list(person.address.lines), "postalCode": person.address.postcode}
        ]
    return resource


def consent_resource(consent: Consent, ids: dict[Role, str], at: str) -> dict[str, Any]:
    status, provision_type = _CONSENT[consent.status]
    justice = {
        "type": "permit" if consent.share_with_justice else "deny",
        "actor": [
            {
                "role": {
                    "coding": [
                        coding(
                            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "IRCP",
                            "information recipient",
                        )
                    ]
                },
                "reference": reference(ids[Role.SOURCE_ORG]),
            }
        ],
    }
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": ids[Role.CONSENT],
        "meta": fhir_meta(UKCORE_PROFILE + "Consent", at),
        "status": status,
        "scope": {
            "coding": [
                coding(
                    "http://terminology.hl7.org/CodeSystem/consentscope",
                    "patient-privacy",
                    "Privacy Consent",
                )
            ]
        },
        "category": [
            {
                "coding": [
                    coding(
                        "https://fhir.nhs.uk/CodeSystem/consent-categories-bars",
                        "DRC",
                        "Direct Care",
                    )
                ]
            }
        ],
        "patient": reference(ids[Role.PATIENT]),
        "dateTime": fhir_instant(consent.recorded_at),
        "organization": [reference(ids[Role.SOURCE_ORG])],
    }
    if consent.status == ConsentStatus.LACKS_CAPACITY:
        resource["policy"] = [{"uri": BEST_INTERESTS_POLICY}]
    resource["policyRule"] = {"coding": [coding(HL7_V3_ACT_CODE, "IMPLIED")]}
    resource["provision"] = {"type": provision_type, "provision": [justice]}
    return resource


def _encounter(alert: Alert, ids: dict[Role, str], at: str) -> dict[str, Any]:
    source = alert.source
    locations = [{"location": {"display": source.location}}]
    if alert.hearing is not None and alert.hearing.court != source.location:
        locations.append({"location": {"display": alert.hearing.court}})
    resource: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": ids[Role.ENCOUNTER],
        "meta": fhir_meta(UKCORE_PROFILE + "Encounter", at),
        "identifier": [
            {"system": SOURCE_REFERENCE_SYSTEMS[source.kind], "value": source.reference}
        ],
        "status": "in-progress" if source.kind == SourceKind.CUSTODY else "planned",
        "class": coding(HL7_V3_ACT_CODE, "FLD", "field"),
        "subject": reference(ids[Role.PATIENT]),
    }
    if alert.hearing is not None:
        resource["period"] = {"start": fhir_instant(alert.hearing.at)}
    resource["location"] = locations
    resource["serviceProvider"] = reference(ids[Role.SOURCE_ORG])
    return resource
