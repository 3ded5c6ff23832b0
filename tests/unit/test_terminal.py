"""What the `hub` commands print cannot drive the operator's terminal: controls, ESC/CSI/OSC
sequences and bidi/format characters from outside are made inert (hub.security.terminal.neutralise),
at the CLI's one output function, for tables, `hub trace` and `hub failed …` alike."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.adapters.memory.failed_store import MemoryFailedStore
from hub.adapters.memory.ledger import MemoryLedger
from hub.cli.main import main
from hub.records import AlertFacts, ReferralRecord
from hub.security.terminal import neutralise
from tests.fixtures.dead_letters import T0, dead_letter, failure

pytestmark = pytest.mark.unit

HOSTILE = (
    "\x1b]0;owned\x07"  # OSC: retitle the window
    "\x1b[2J\x1b[H"  # CSI: clear the screen, cursor home
    "\x9b31m"  # C1 CSI
    "\u202eevil\u202c"  # bidi override
    "\u200b\x00\x7f\r"
    "line\nforged"
)
UNSAFE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"}


def _unsafe(text: str, *, newlines_ok: bool = False) -> list[str]:
    return [
        ch
        for ch in text
        if unicodedata.category(ch) in UNSAFE_CATEGORIES and not (newlines_ok and ch == "\n")
    ]


def test_escape_sequences_controls_and_bidi_overrides_are_made_visible_and_inert() -> None:
    out = neutralise(HOSTILE)

    assert _unsafe(out) == []
    assert "\\u001b]0;owned\\u0007" in out and "\\u202e" in out and "\\u000a" in out


def test_plain_text_and_non_latin_letters_pass_unchanged() -> None:
    text = "alert 6b1f… → wy-ld: délivré, Łódź, 東京"

    assert neutralise(text) == text


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec=None), max_size=200))
def test_no_control_or_format_character_survives(text: str) -> None:
    assert _unsafe(neutralise(text)) == []
    assert _unsafe(neutralise(text, keep_newlines=True), newlines_ok=True) == []


# -- the CLI -----------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[MemoryFailedStore, MemoryLedger]]:
    store, ledger = MemoryFailedStore(), MemoryLedger()
    store.close = lambda: None  # type: ignore[method-assign]
    ledger.close = lambda: None  # type: ignore[method-assign]
    publisher = SimpleNamespace(close=lambda: None)

    @contextmanager
    def _noop() -> Iterator[None]:
        yield

    monkeypatch.setattr(
        "hub.settings.load.load_settings", lambda _dir: SimpleNamespace(log_level="ERROR")
    )
    monkeypatch.setattr("hub.bootstrap.operations_adapters", lambda _s: (ledger, store, publisher))
    yield store, ledger


def _run(*args: str) -> str:
    result = CliRunner().invoke(main, [*args, "--config", str(Path("config"))])
    assert result.exit_code == 0, result.output
    return result.output


def _hostile_parked(store: MemoryFailedStore, ledger: MemoryLedger) -> tuple[int, str]:
    envelope = dead_letter(error="HTTP 400 " + HOSTILE, error_class="Perm" + HOSTILE)
    envelope.headers["x-publisher-note"] = HOSTILE
    alert_id = str(envelope.headers["x-hub-alert-id"])
    ledger.record_alert(
        AlertFacts(
            alert_id=alert_id,
            body_sha256="a" * 64,
            source_kind="custody",
            organisation_code="WYP",
            reference="WY-26-000001",
            pathway="adult",
            urgency="urgent",
            consent_status="given",
            share_with_justice=True,
            received_at=T0,
        )
    )
    referral = ReferralRecord(str(envelope.message_id), alert_id, "wy-ld", request_id=HOSTILE)
    ledger.mark_routed(alert_id, rule="default", referrals=[referral], at=T0)
    return store.add(failure(envelope), at=T0)[1], alert_id


def test_failed_list_groups_show_and_trace_print_nothing_that_drives_a_terminal(
    cli: tuple[MemoryFailedStore, MemoryLedger],
) -> None:
    store, ledger = cli
    failed_id, alert_id = _hostile_parked(store, ledger)

    outputs = {
        "list": _run("failed", "list"),
        "groups": _run("failed", "list", "--groups"),
        "list --json": _run("failed", "list", "--json"),
        "show": _run("failed", "show", str(failed_id)),
        "trace": _run("trace", alert_id),
        "trace --json": _run("trace", alert_id, "--json"),
    }

    for name, out in outputs.items():
        assert _unsafe(out, newlines_ok=True) == [], name
        assert "forged" not in [line.strip() for line in out.splitlines()], name
    assert json.loads(outputs["trace --json"])[0]["alert_id"] == alert_id
