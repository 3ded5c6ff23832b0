"""Alert → HL7 v2.5 REF^I12 for receivers without FHIR, and their MLLP ACK → a verdict's input.

Pure: no clock, no I/O, no environment, no logging. Times come from the alert and the control id
from the caller, so a retry renders the same message byte for byte. (hl7apy's `Message()` stamps
MSH-7 with the local clock when built; it is overwritten with `sent_at` before anything is read.)

The message is built with hl7apy at validation level STRICT and validated before it is returned,
so a structural mistake here is a `hl7apy.exceptions.ValidationError` in the tests, never a
message a receiver has to reject. Each segment ends with `\\r` (HL7 v2.5 §2.5.1); MLLP framing is
the adapter's job (hub/adapters/mllp.py).

Mapping (the review checklist). Codes in `code^text^system` are ER7 CE values.

| source                      | HL7 v2.5 (REF_I12)                                               |
|-----------------------------|------------------------------------------------------------------|
| fixed                       | MSH-3 `LD_HUB`, MSH-9 `REF^I12^REF_I12`, MSH-11 `P` (production),|
|                             | MSH-12 `2.5`, MSH-18 `UNICODE UTF-8` (names are not ASCII-only)  |
| HubIdentity.ods_code        | MSH-4 sending facility                                           |
| Recipient.ods_code          | MSH-6 receiving facility (MSH-5 left empty: the receiver's own   |
|                             | application name is not in the endpoint configuration)           |
| alert.sent_at               | MSH-7, RF1-7 effective date (UTC, `YYYYMMDDHHMMSS+0000`)          |
| control_id (argument)       | MSH-10; at most 20 characters (v2.5 ST length), see              |
|                             | `control_id_for`; a resend reuses it so receivers can de-dupe    |
| fixed                       | RF1-1 status `P^Pending^HL70283`                                 |
| urgency                     | RF1-2 priority, HL7 table 0280 (S=STAT, A=ASAP, R=Routine):      |
|                             | routine → `R`, urgent → `A`, emergency → `S` (as FHIR            |
|                             | routine/urgent/stat in alert_to_referral)                        |
| referral_ids().bundle_id    | RF1-6 originating referral id `<bundle id>^<hub ODS>`: the same  |
|                             | id as the FHIR Bundle, so both routes name one referral          |
| alert_id                    | RF1-11 external referral id `<alert id>^<source ODS>`            |
| source.organisation         | PRD (group 1) role `RP^Referring Provider^HL70286`, PRD-2 name,  |
|                             | PRD-7 `<code>^ODS`                                               |
| Recipient                   | PRD (group 2) role `RT^Referred to Provider^HL70286`, PRD-2      |
|                             | organisation_name, PRD-7 `<ods_code>^ODS`                        |
| person.nhs_number           | PID-3 `<nhs number>^^^NHS^NH` (NHS ITK v2 convention)            |
| person.pnc_id               | PID-3 `<pnc id>^^^PNC&<PNC_ID_SYSTEM>&URI^PN` (person number;    |
|                             | the same project system as the FHIR Patient.identifier)          |
| source.reference            | PID-3 `<reference>^^^<source ODS>^VN` only when there is neither |
|                             | NHS number nor PNC id: PID-3 is required, and a visit number     |
|                             | (the custody detention / court case) cannot be mistaken for a    |
|                             | person identifier by a receiver matching patients                |
| person.name                 | PID-5 `<family>^<given[0]>^<given[1:] space-joined>`             |
| person.date_of_birth        | PID-7 `YYYYMMDD`                                                 |
| person.sex                  | PID-8, HL7 table 0001: male M, female F, other O, unknown U      |
| person.address              | PID-11 lines 1-3 → XAD-1..3, lines 4+ → XAD-4 (", "-joined),     |
|                             | postcode → XAD-5; alert lines are unstructured, so XAD-3 "city"  |
|                             | and XAD-4 "state" hold whatever lines 3 and 4+ are               |
| vulnerabilities[] (each)    | DG1 set id n, DG1-6 type `W` (working: identified at screening,  |
|                             | not a diagnosis), DG1-3 `<SNOMED>^<display>^SCT^<type>^<label>^  |
|                             | 99LDV` where alert_to_referral.VULNERABILITY_SNOMED has a code,  |
|                             | else `<type>^<label>^99LDV` (99LDV: the hub's local code system) |
| vulnerabilities[].detail    | NTE (message level, after DG1) per non-blank detail: NTE-2 `P`   |
|                             | (placer), NTE-3 `<label>: <detail>`, one repetition per line,    |
|                             | NTE-4 `RE^Remark^HL70364`; nowhere else                          |
| pathway, hearing, consent,  | not mapped: REF_I12 has no field for them (the receiver can      |
| source.location/reported_by | derive youth from PID-7); the FHIR route carries them            |

"SCT" is the HL7-registered SNOMED CT code-system name (table 0396 gained it after v2.5), and the
table 0396 patterns `HL7nnnn` / `99zzz` are listed literally in hl7apy: both show up as
validation *warnings*, never errors. All text is escaped (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\) here, not left
to hl7apy, which would parse an unescaped `^` in a name as a component separator.

The public builders (`start_ref`, `add_referral_info`, `add_providers`, `add_note`, `build_ref`,
`encode`) are shared with followup_to_hl7v2, whose REF^I13/I14 use the same structure.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message, Segment

from hub.messages import Alert, HubIdentity, Organisation, Recipient, Urgency, Vulnerability
from hub.transforms.fhir_vocabulary import PNC_ID_SYSTEM, VULNERABILITY_LABELS, VULNERABILITY_SNOMED
from hub.transforms.referral_ids import ReferralIds, referral_ids

HL7_VERSION = "2.5"
MESSAGE_TYPE = "REF^I12^REF_I12"
SENDING_APPLICATION = "LD_HUB"
CHARACTER_SET = "UNICODE UTF-8"
MAX_CONTROL_ID = 20  # HL7 v2.5 MSH-10 is ST(20)
LOCAL_VULNERABILITY_SYSTEM = "99LDV"  # table 0396 "99zzz": a local code system
PENDING = "P^Pending^HL70283"
REMARK = "RE^Remark^HL70364"

_PRIORITY = {Urgency.ROUTINE: "R", Urgency.URGENT: "A", Urgency.EMERGENCY: "S"}
_PRIORITY_TEXT = {Urgency.ROUTINE: "Routine", Urgency.URGENT: "ASAP", Urgency.EMERGENCY: "STAT"}
_SEX = {"male": "M", "female": "F", "other": "O", "unknown": "U"}

# Order matters: the escape character first, so the sequences added after it stay intact.
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def er7_text(value: str) -> str:
    """`value` as one ER7 leaf: separators escaped, line breaks folded to spaces (ST/XPN/XAD
    components cannot hold one)."""
    for char, sequence in _ESCAPES:
        value = value.replace(char, sequence)
    return " ".join(value.split())


def er7_components(*parts: str) -> str:
    return "^".join(parts).rstrip("^")


def hl7_timestamp(value: datetime) -> str:
    """An HL7 TS in UTC with an explicit offset. A naive datetime is a programming error."""
    if value.utcoffset() is None:
        raise ValueError("HL7 timestamps need a time zone; got a naive datetime")
    return value.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")


def control_id_from_request_id(request_id: str) -> str:
    """A 20-character MSH-10 from a delivery's (keyed) X-Request-Id: its first 80 bits. Stable
    across retries, as HL7 original-mode resends reuse the control id; the MLLP sender derives
    the MSA-2 it waits for from the job's request id the same way."""
    return uuid.UUID(request_id).hex[:MAX_CONTROL_ID]


def control_id_for(ids: ReferralIds) -> str:
    """MSH-10 of the message that delivers `ids` (a referral's or a follow-up's)."""
    return control_id_from_request_id(ids.request_id)


def render_ref_i12(alert: Alert, *, recipient: Recipient, hub: HubIdentity, control_id: str) -> str:
    """The REF^I12 for one alert and one recipient, ER7-encoded, each segment ending in `\\r`."""
    return encode(build_ref(alert, recipient=recipient, hub=hub, control_id=control_id))


def build_ref(
    alert: Alert,
    *,
    recipient: Recipient,
    hub: HubIdentity,
    control_id: str,
    message_type: str = MESSAGE_TYPE,
    status: str | None = PENDING,
) -> Message:
    """The REF_I12-structured message for a whole alert, not yet validated (`encode` does):
    the REF^I13 of an update is this with another MSH-9 and RF1-1, and may add NTEs."""
    at, source = alert.sent_at, alert.source
    message = start_ref(
        message_type=message_type, control_id=control_id, at=at, recipient=recipient, hub=hub
    )
    add_referral_info(
        message,
        alert_id=alert.alert_id,
        source_code=source.organisation.code,
        recipient=recipient,
        hub=hub,
        status=status,
        urgency=alert.urgency,
        effective=at,
    )
    add_providers(message, referrer=source.organisation, recipient=recipient)
    _pid(message, alert)
    for set_id, vulnerability in enumerate(alert.vulnerabilities, start=1):
        _dg1(message, set_id, vulnerability)
    notes = [v for v in alert.vulnerabilities if v.detail.strip()]
    for set_id, vulnerability in enumerate(notes, start=1):
        label = VULNERABILITY_LABELS[vulnerability.type]
        lines = [line.strip() for line in vulnerability.detail.splitlines() if line.strip()]
        add_note(message, set_id, [f"{label}: {lines[0]}", *lines[1:]])
    return message


def start_ref(
    *, message_type: str, control_id: str, at: datetime, recipient: Recipient, hub: HubIdentity
) -> Message:
    """A REF_I12-structured message holding only its MSH."""
    if not control_id or len(control_id) > MAX_CONTROL_ID or not control_id.isprintable():
        raise ValueError(f"control_id must be 1-{MAX_CONTROL_ID} printable characters")
    message = Message("REF_I12", version=HL7_VERSION, validation_level=VALIDATION_LEVEL.STRICT)
    msh = message.msh
    msh.msh_3 = SENDING_APPLICATION
    msh.msh_4 = er7_text(hub.ods_code)
    msh.msh_6 = er7_text(recipient.ods_code)
    msh.msh_7 = hl7_timestamp(at)
    msh.msh_9 = message_type
    msh.msh_10 = er7_text(control_id)
    msh.msh_11 = "P"
    msh.msh_12 = HL7_VERSION
    msh.msh_18 = CHARACTER_SET
    return message


def add_referral_info(
    message: Message,
    *,
    alert_id: str,
    source_code: str,
    recipient: Recipient,
    hub: HubIdentity,
    status: str | None,
    urgency: Urgency | None = None,
    effective: datetime | None = None,
) -> None:
    """RF1: RF1-6 is always the referral's own id (its FHIR Bundle id), whichever message."""
    rf1 = message.add_segment("RF1")
    if status is not None:
        rf1.rf1_1 = status
    if urgency is not None:
        rf1.rf1_2 = f"{_PRIORITY[urgency]}^{_PRIORITY_TEXT[urgency]}^HL70280"
    bundle_id = referral_ids(hub.id_key(), alert_id, recipient.endpoint).bundle_id
    rf1.rf1_6 = er7_components(bundle_id, er7_text(hub.ods_code))
    if effective is not None:
        rf1.rf1_7 = hl7_timestamp(effective)
    rf1.rf1_11 = er7_components(er7_text(alert_id), er7_text(source_code))


def add_providers(message: Message, *, referrer: Organisation, recipient: Recipient) -> None:
    # HL7 v2.5 PRD has no organisation-name field; PRD-2 (provider name, XPN) carries it as the
    # family-name component, and PRD-7 the ODS code as a practitioner id (type "ODS", local to
    # the user-defined table 0338).
    for role, name, ods_code in (
        ("RP^Referring Provider^HL70286", referrer.name, referrer.code),
        ("RT^Referred to Provider^HL70286", recipient.organisation_name, recipient.ods_code),
    ):
        prd = message.add_group("REF_I12_PROVIDER_CONTACT").add_segment("PRD")
        prd.prd_1 = role
        prd.prd_2 = er7_text(name)
        prd.prd_7 = er7_components(er7_text(ods_code), "ODS")


def add_note(message: Message, set_id: int, lines: list[str], comment_type: str = REMARK) -> None:
    """A message-level NTE from the placer: one NTE-3 repetition per line."""
    nte = message.add_segment("NTE")
    nte.nte_1 = str(set_id)
    nte.nte_2 = "P"
    for line in lines:
        # A "~" in a field assignment is not split into repetitions by hl7apy: add each one.
        nte.add_field("NTE_3").value = er7_text(line)
    nte.nte_4 = comment_type


def encode(message: Message) -> str:
    """Validate at STRICT (raises hl7apy ValidationError on the first structural error) and
    ER7-encode, each segment ending in `\\r`."""
    message.validate()
    return "".join(f"{segment.to_er7()}\r" for segment in _segments(message))


def _segments(element: Message | Segment) -> list[Segment]:
    """Segments in wire order, groups flattened."""
    if isinstance(element, Segment):
        return [element]
    found: list[Segment] = []
    for child in element.children:
        found.extend(_segments(child))
    return found


def _pid(message: Message, alert: Alert) -> None:
    person = alert.person
    pid = message.add_segment("PID")
    pid.pid_1 = "1"
    identifiers: list[str] = []
    if person.nhs_number:
        identifiers.append(f"{er7_text(person.nhs_number)}^^^NHS^NH")
    if person.pnc_id:
        identifiers.append(f"{er7_text(person.pnc_id)}^^^PNC&{er7_text(PNC_ID_SYSTEM)}&URI^PN")
    if not identifiers:
        source = alert.source
        identifiers.append(
            f"{er7_text(source.reference)}^^^{er7_text(source.organisation.code)}^VN"
        )
    for identifier in identifiers:
        # A "~" in a field assignment is not split into repetitions by hl7apy: add each one.
        pid.add_field("PID_3").value = identifier
    given = [er7_text(g) for g in person.name.given]
    pid.pid_5 = er7_components(er7_text(person.name.family), given[0], " ".join(given[1:]))
    pid.pid_7 = person.date_of_birth.strftime("%Y%m%d")
    pid.pid_8 = _SEX[person.sex]
    if person.address is not None:
        lines = [er7_text(line) for line in person.address.lines]
        pid.pid_11 = er7_components(
            *(lines[:3] + [""] * (3 - len(lines[:3]))),
            ", ".join(lines[3:]),
            er7_text(person.address.postcode),
        )


def _dg1(message: Message, set_id: int, vulnerability: Vulnerability) -> None:
    local = (str(vulnerability.type), er7_text(VULNERABILITY_LABELS[vulnerability.type]))
    snomed = VULNERABILITY_SNOMED.get(vulnerability.type)
    if snomed is not None:
        code = er7_components(
            snomed[0], er7_text(snomed[1]), "SCT", *local, LOCAL_VULNERABILITY_SYSTEM
        )
    else:
        code = er7_components(*local, LOCAL_VULNERABILITY_SYSTEM)
    dg1 = message.add_segment("DG1")
    dg1.dg1_1 = str(set_id)
    dg1.dg1_3 = code
    dg1.dg1_6 = "W"


# --- the answer -------------------------------------------------------------------------------


class AckStatus(StrEnum):
    ACCEPTED = "accepted"  # AA (or enhanced-mode CA)
    ERROR = "error"  # AE / CE: the receiver failed; worth sending again later
    REJECTED = "rejected"  # AR / CR: the receiver refuses this message; resending cannot help


_ACK_CODES = {
    "AA": AckStatus.ACCEPTED,
    "CA": AckStatus.ACCEPTED,
    "AE": AckStatus.ERROR,
    "CE": AckStatus.ERROR,
    "AR": AckStatus.REJECTED,
    "CR": AckStatus.REJECTED,
}


@dataclass(frozen=True, slots=True)
class AckResult:
    status: AckStatus
    code: str  # MSA-1 as sent
    control_id: str  # MSA-2: the MSH-10 this ACK answers
    text: str  # MSA-3 and the ERR texts, "; "-joined; may be empty


class UnreadableAck(ValueError):
    """The answer is not an HL7 ACK the hub can judge (no MSH/MSA, unknown MSA-1)."""


_UNESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\"}


def _unescape(value: str, escape: str, separators: dict[str, str]) -> str:
    if not escape or escape not in value:
        return value
    out, parts = [], value.split(escape)
    for index, part in enumerate(parts):
        if index % 2 == 1 and index < len(parts) - 1:
            char = _UNESCAPES.get(part)
            out.append(separators[char] if char else " " if part == ".br" else "")
        else:
            out.append(part)
    return "".join(out)


def parse_ack(message: str) -> AckResult:
    """The verdict-relevant parts of an ACK (any v2 version, ACK or RRI^I12 alike).

    Parsed by hand, not with hl7apy: a receiver's ACK may be of another version or carry
    fields hl7apy's STRICT structures refuse, and only MSH-1/2, MSA and ERR are needed.
    """
    segments = [s for s in message.replace("\n", "\r").split("\r") if s.strip()]
    if not segments or not segments[0].startswith("MSH") or len(segments[0]) < 8:
        raise UnreadableAck("the answer does not start with an MSH segment")
    field_sep = segments[0][3]
    encoding = segments[0][4:8].split(field_sep)[0]
    chars = (encoding + "^~\\&"[len(encoding) :])[:4]
    component, repetition, escape, subcomponent = chars[0], chars[1], chars[2], chars[3]
    separators = {"|": field_sep, "^": component, "~": repetition, "\\": escape, "&": subcomponent}

    def fields(segment: str) -> list[str]:
        return segment.split(field_sep)

    def text(value: str) -> str:
        return _unescape(value, escape, separators).strip()

    msa = next((fields(s) for s in segments if s.startswith(f"MSA{field_sep}")), None)
    if msa is None or len(msa) < 2:
        raise UnreadableAck("the answer has no MSA segment")
    code = msa[1].strip().upper()
    if code not in _ACK_CODES:
        raise UnreadableAck(f"MSA-1 {code[:8]!r} is not an acknowledgment code (HL7 table 0008)")
    texts = [text(msa[3])] if len(msa) > 3 else []
    for err in (fields(s) for s in segments if s.startswith(f"ERR{field_sep}")):
        # v2.5 ERR-3 error code (code^text), ERR-7 diagnostics, ERR-8 user message; v2.3/2.4
        # put a code and text in ERR-1's fourth component.
        parts = []
        if len(err) > 1:
            legacy = err[1].split(repetition)[0].split(component)
            if len(legacy) > 3:
                parts.append(text(" ".join(legacy[3].split(subcomponent)[:2])))
        if len(err) > 3:
            parts.append(text(" ".join(err[3].split(component)[:2])))
        parts.extend(text(err[i]) for i in (7, 8) if len(err) > i)
        texts.extend(parts)
    return AckResult(
        status=_ACK_CODES[code],
        code=code,
        control_id=text(msa[2]) if len(msa) > 2 else "",
        text="; ".join(t for t in texts if t),
    )
