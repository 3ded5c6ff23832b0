"""The onward services a service's response may name by code, and the words the justice side reads.

Pure data and one check: no I/O, no clock. A referral on is reported "by service type": the hub
reads the code, never the sender's display or text, and reports its own label, so what crosses
to the justice side is a closed vocabulary. A code not listed here is refused, never guessed:
add it here (and to docs/outcome-mapping.md) once someone has checked what it means.

The codes are SNOMED CT referral procedures (is-a 3457005 Patient referral; HL7 ValueSet
referral-type, international edition: reference/nhs-fhir-facts.md §4). The label is the display
without its "Referral to". 306206005 "Referral to service" is left out on purpose: it names no
service type. Verify displays against the UK edition before release.
"""

from __future__ import annotations

from collections.abc import Mapping

from hub.messages import Problem

SNOMED_CT = "http://snomed.info/sct"

ONWARD_SERVICES: dict[str, str] = {
    "390866009": "Mental health team",
    "183583007": "Mental health worker",
    "306136006": "Liaison psychiatry service",
    "306135005": "Forensic psychiatry service",
    "183524004": "Psychiatry service",  # Psychiatric referral
    "413127007": "Learning disability team",
    "417096006": "Community drug and alcohol team",
    "396150002": "Substance misuse service",  # Referral for substance abuse
    "390857005": "Community alcohol team",
    "417699000": "Drug treatment centre",
    "431260004": "Specialist alcohol treatment service",
    "306238000": "Social services",
    "444543005": "Social services (adult protection)",
    "308440001": "Social worker",
    "710911006": "Housing service",
}


def onward_service(concept: object, path: str, problems: list[Problem]) -> str | None:
    """The service type a CodeableConcept names by a listed SNOMED CT code, or a Problem."""
    codings = concept.get("coding", []) if isinstance(concept, Mapping) else []
    snomed = [c for c in codings if isinstance(c, Mapping) and c.get("system") == SNOMED_CT]
    labels = {ONWARD_SERVICES.get(str(c.get("code"))) for c in snomed}
    if not snomed:
        problems.append(Problem(path, "needs a SNOMED CT coding for the service referred to"))
    elif None in labels:
        problems.append(
            Problem(path, "a SNOMED CT code the hub does not know as an onward service")
        )
    elif len(labels) > 1:
        problems.append(Problem(path, "codes for more than one service: one per referral"))
    else:
        return labels.pop()
    return None
