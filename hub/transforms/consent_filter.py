"""What of a service's answer may cross to the justice side: one pure function, one table.

Health detail crosses only with consent to share with justice (DESIGN.md, security rules).
No I/O, no clock: everything comes in as arguments.

| consent.status  | share_with_justice | status + timing | service code + name          | detail (recommendation, referred_to, note) |
|-----------------|--------------------|-----------------|------------------------------|--------------------------------------------|
| given           | true               | yes             | the service's ODS code, name | recommendation, referred_to (note: never)  |
| given           | false              | yes             | "HEALTH", "Health service"   | none                                       |
| refused         | any                | yes             | "HEALTH", "Health service"   | none                                       |
| not_asked       | any                | yes             | "HEALTH", "Health service"   | none                                       |
| lacks_capacity  | any                | yes             | "HEALTH", "Health service"   | none (no one has consented for the person) |

A service's own name can reveal a condition ("drug and alcohol team"), and so can its ODS code
(anyone can look it up), so without consent both become neutral: "HEALTH", "Health service". The clinical `note` is for health staff and never leaves,
even with consent: what is meant for the court or custody officer is the `recommendation`.
"""

from __future__ import annotations

from dataclasses import dataclass

NEUTRAL_SERVICE_NAME = "Health service"
NEUTRAL_SERVICE_CODE = "HEALTH"

# Fields of an outcome that are clinical: they appear only when `may_share_detail` is true.
CLINICAL_FIELDS = ("recommendation", "referred_to", "note")
_SHAREABLE_WITH_CONSENT = ("recommendation", "referred_to")


@dataclass(frozen=True, slots=True)
class JusticeView:
    service_code: str
    service_name: str
    detail: dict[str, str]


def may_share_detail(*, consent_status: str, share_with_justice: bool) -> bool:
    return consent_status == "given" and share_with_justice


def justice_view(
    *,
    consent_status: str,
    share_with_justice: bool,
    service_code: str,
    service_name: str,
    recommendation: str | None = None,
    referred_to: str | None = None,
    note: str | None = None,
) -> JusticeView:
    """Reduce a service's answer to what the justice side may see."""
    if not may_share_detail(consent_status=consent_status, share_with_justice=share_with_justice):
        return JusticeView(
            service_code=NEUTRAL_SERVICE_CODE, service_name=NEUTRAL_SERVICE_NAME, detail={}
        )
    offered = {"recommendation": recommendation, "referred_to": referred_to, "note": note}
    detail = {k: v for k, v in offered.items() if k in _SHAREABLE_WITH_CONSENT and v}
    return JusticeView(service_code=service_code, service_name=service_name, detail=detail)
