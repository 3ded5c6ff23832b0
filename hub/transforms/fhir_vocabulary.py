"""The FHIR vocabulary of the hub's messages: code systems, identifier systems, profiles, the
SNOMED codes for vulnerabilities, and the small element builders (instant, coding, reference,
meta) that alert_to_referral.py, followup_to_bundle.py, response_to_outcome.py and the other
transforms share. Pure.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from hub.messages import SourceKind, VulnerabilityType

# uuid5(NAMESPACE_URL, "https://ld-hub.example.nhs.uk/fhir/resource-ids"): no longer for the ids
# the hub sends (those are keyed, resource_id); only for the resource ids of the pretend service
# responses (response_to_outcome.build_service_response), which never leave a test or the demo.
ID_NAMESPACE = uuid.UUID("ebfd4fe3-e52d-51fa-8a77-730335f1f4da")

SNOMED = "http://snomed.info/sct"
HL7_V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
DOS_SERVICE_SYSTEM = "https://fhir.nhs.uk/Id/dos-service-id"
MESSAGE_EVENTS_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-events-bars"
MESSAGE_REASON_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-reason-bars"
SR_CATEGORY_SYSTEM = "https://fhir.nhs.uk/CodeSystem/message-category-servicerequest"
REFERRAL_DEFINITION = (
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral"
)
# The project's own systems: nothing national exists for these (reference notes §2).
PROJECT_BASE = "https://ld-hub.example.nhs.uk"
ALERT_ID_SYSTEM = f"{PROJECT_BASE}/Id/alert-id"
PNC_ID_SYSTEM = f"{PROJECT_BASE}/Id/pnc-id"
ENDPOINT_SYSTEM = f"{PROJECT_BASE}/Id/endpoint"
PATHWAY_SYSTEM = f"{PROJECT_BASE}/CodeSystem/ld-pathway"
SOURCE_REFERENCE_SYSTEMS = {
    SourceKind.CUSTODY: f"{PROJECT_BASE}/Id/custody-record-number",
    SourceKind.COURT: f"{PROJECT_BASE}/Id/court-case-number",
}

BARS_BUNDLE_PROFILE = "https://fhir.nhs.uk/StructureDefinition/BARSBundleMessage"
UKCORE_PROFILE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"  # + resource type
NHS_NUMBER_VERIFICATION_URL = (
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
)
# The STU1 code system BaRS is built on (retired in UK Core STU2, reference notes §2); BaRS allows
# only number-present-and-verified or number-present-but-not-traced, and the hub never traces.
NHS_NUMBER_VERIFICATION_SYSTEM = (
    "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
)
BEST_INTERESTS_POLICY = "https://www.legislation.gov.uk/ukpga/2005/9/section/4"

REFERRAL_CODE = (SNOMED, "306206005", "Referral to service")

VULNERABILITY_LABELS: dict[VulnerabilityType, str] = {
    VulnerabilityType.MENTAL_HEALTH: "Mental health",
    VulnerabilityType.LEARNING_DISABILITY: "Learning disability",
    VulnerabilityType.AUTISM: "Autism",
    VulnerabilityType.SUBSTANCE_MISUSE: "Substance misuse",
    VulnerabilityType.ALCOHOL_MISUSE: "Alcohol misuse",
    VulnerabilityType.PHYSICAL_HEALTH: "Physical health",
    VulnerabilityType.UNSTABLE_ACCOMMODATION: "Unstable accommodation",
    VulnerabilityType.SELF_HARM_SUICIDE_RISK: "Self-harm or suicide risk",
    VulnerabilityType.DOMESTIC_ABUSE: "Domestic abuse",
    VulnerabilityType.FINANCIAL_HARDSHIP: "Financial hardship",
    VulnerabilityType.SPEECH_LANGUAGE_COMMUNICATION: "Speech, language or communication needs",
}

VULNERABILITY_SNOMED: dict[VulnerabilityType, tuple[str, str]] = {
    VulnerabilityType.MENTAL_HEALTH: ("74732009", "Mental disorder"),
    VulnerabilityType.LEARNING_DISABILITY: ("110359009", "Intellectual disability"),
    VulnerabilityType.SUBSTANCE_MISUSE: ("66214007", "Substance abuse"),
    VulnerabilityType.ALCOHOL_MISUSE: ("415685003", "Suspected alcohol abuse"),
    VulnerabilityType.SELF_HARM_SUICIDE_RISK: ("401206008", "At risk for deliberate self harm"),
}


def fhir_instant(value: datetime) -> str:
    """A FHIR instant in UTC ("Z"). A naive datetime is a programming error: never guess a zone."""
    if value.utcoffset() is None:
        raise ValueError("FHIR instants need a time zone; got a naive datetime")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    coding = {"system": system, "code": code}
    if display is not None:
        coding["display"] = display
    return coding


def reference(resource_id: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{resource_id}"}


def fhir_meta(profile: str, last_updated: str) -> dict[str, Any]:
    return {"profile": [profile], "lastUpdated": last_updated}
