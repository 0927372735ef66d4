"""The shadow challenger's record (tasks/registry/challenger.py): sealed as the champion pointer
is, at most one per model, every move in history; its bad inputs exit 6 with one line and leave
the champion untouched; its live verdict promotes (evidence: shadow), asks for approval or
retires it."""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from schemas.config import Gates
from schemas.errors import IntegrityError
from tasks.registry import signing
from tasks.registry.approval import decide_pending
from tasks.registry.challenger import (
    CHALLENGER_FILE,
    SHADOW,
    challenge,
    challenge_if_refused,
    clear_challenger,
    read_challenger,
    settle,
)
from tasks.registry.store import Registry

KEY = signing.SigningKey(b"c" * 40, "test")
FAIR_ROWS_REFUSED = {"status": "refused", "gates": [
    {"gate": "min_recall", "passed": True}, {"gate": "champion_fair_rows", "passed": False}]}


class Model:
    def __init__(self, value):
        self.value = value


@pytest.fixture
def reg(tmp_path, monkeypatch) -> Registry:
    monkeypatch.setenv(signing.KEY_ENV, KEY.secret.decode())
    return Registry(tmp_path / "registry", "fraud")


def add(reg: Registry, status="passed") -> str:
    reference = pd.DataFrame({"x": [1.0, 2.0], "label": ["0", "1"]})
    return reg.register(Model(1), {"verdict": {"status": status}}, reference=reference,
                        card="# {version}\n")


def served(reg: Registry) -> tuple[str, str]:
    """A champion and a refused candidate."""
    champion = add(reg)
    reg.promote(champion, reason="first")
    return champion, add(reg, status="refused")


def cli(reg: Registry, *args: str):
    result = CliRunner().invoke(app, ["models", "challenge", *args, "--registry",
                                      str(reg.root), "--name", reg.name])
    return result.exit_code, result.output


def shadow(reg: Registry, status: str, *, champion: str, challenger: str) -> dict:
    return {"status": status, "evidence": SHADOW, "challenger": challenger,
            "champion": champion, "rows": 900, "positives": 25, "gates": [],
            "comparison": None, "reason": f"shadow comparison: {status}"}


def test_challenge_is_sealed_and_in_history(reg):
    """Check that naming a challenger writes a sealed record (seq, prev, mac) naming whom it
    shadows, and a signed `challenge` history entry; the champion is unchanged."""
    champion, candidate = served(reg)
    entry = challenge(reg, candidate, reason="try it")
    record = json.loads((reg.dir / CHALLENGER_FILE).read_text())
    assert record["version"] == candidate and record["champion"] == champion
    assert record["mac"] and record["seq"] == 1 and record["event_id"] == entry["event_id"]
    last = reg.history()[-1]
    assert last["action"] == "challenge" and last["version"] == candidate and last["mac"]
    assert last["status"] == "refused" and last["how"] == "by hand"
    assert read_challenger(reg)["version"] == candidate
    assert reg.champion()["version"] == champion


def test_an_edited_challenger_record_is_refused(reg):
    """Check that challenger.json edited to name another version is refused, as an edited
    champion pointer is (exit 6 from the CLI)."""
    champion, candidate = served(reg)
    other = add(reg, status="rejected")
    challenge(reg, candidate, reason="try it")
    path = reg.dir / CHALLENGER_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), "version": other}))
    with pytest.raises(IntegrityError, match="challenger.json does not match its signature"):
        read_challenger(reg)
    code, out = cli(reg, "--clear")
    assert code == 6 and "does not match its signature" in out
    assert reg.champion()["version"] == champion


def test_a_replayed_old_challenger_record_is_refused(reg):
    """Check that putting back an earlier, validly sealed challenger.json after the challenger
    was cleared is refused."""
    _, candidate = served(reg)
    challenge(reg, candidate, reason="try it")
    old = (reg.dir / CHALLENGER_FILE).read_bytes()
    clear_challenger(reg, reason="enough")
    assert read_challenger(reg) is None
    (reg.dir / CHALLENGER_FILE).write_bytes(old)
    with pytest.raises(IntegrityError, match="old copy put back"):
        read_challenger(reg)


@pytest.mark.parametrize("case, message", [
    ("champion", "is the champion: a challenger shadows the champion"),
    ("unknown", "has no version 'v0042'"),
    ("other model", "copied from another name or version"),
    ("second", "already has a challenger, v0002: at most one per model"),
    ("neither", "takes a VERSION or --clear"),
])
def test_bad_challengers_exit_with_one_line(reg, tmp_path, case, message):
    """Check that a challenger that is the champion, an unknown version, a version of another
    model and a second challenger are refused with one line (exit 6; 2 for the usage), with
    the champion and the challenger unchanged."""
    champion, candidate = served(reg)
    third = add(reg, status="refused")
    challenge(reg, candidate, reason="first one")
    history = reg.history_path.read_bytes()
    version = {"champion": champion, "unknown": "v0042", "second": third}.get(case)
    if case == "other model":
        other = Registry(reg.root, "other")
        version = add(other)
        shutil.copytree(other.version_dir(version), reg.versions_dir / "v0009")
        version = "v0009"
    code, out = cli(reg, *([version] if version else []))
    lines = [line for line in out.splitlines() if line.strip()]
    assert code == (2 if case == "neither" else 6), out
    assert len(lines) == 1 and re.search(message, lines[0]), out
    assert reg.champion()["version"] == champion
    assert read_challenger(reg)["version"] == candidate
    assert reg.history_path.read_bytes() == history


def test_refused_for_fair_rows_becomes_the_challenger_when_configured(reg):
    """Check that a candidate refused only for lack of fair rows becomes the challenger with
    gates.shadow_refused, not without it or for other refusals, and that a later automatic
    candidate leaves a challenger already shadowing in place (only a person replaces it)."""
    _, candidate = served(reg)
    assert challenge_if_refused(reg, candidate, FAIR_ROWS_REFUSED, Gates()) is None
    other = {"status": "refused", "gates": [{"gate": "min_test_positives", "passed": False}]}
    assert challenge_if_refused(reg, candidate, other, Gates(shadow_refused=True)) is None
    entry = challenge_if_refused(reg, candidate, FAIR_ROWS_REFUSED, Gates(shadow_refused=True))
    assert entry["how"].startswith("automatically") and read_challenger(reg)
    newer = add(reg, status="refused")
    before = reg.history_path.read_bytes()
    assert challenge_if_refused(reg, newer, FAIR_ROWS_REFUSED,
                                Gates(shadow_refused=True)) is None
    assert read_challenger(reg)["version"] == candidate
    assert reg.history_path.read_bytes() == before


def test_shadow_first_makes_the_candidate_the_challenger(reg):
    """Check that a verdict refused by gates.shadow_first makes the candidate the challenger
    (how: shadow_first) with that setting, and nothing without it."""
    _, candidate = served(reg)
    verdict = {"status": "refused", "gates": [
        {"gate": "min_recall", "passed": True},
        {"gate": "champion_cost", "passed": False},
        {"gate": "shadow_first", "passed": False}]}
    assert challenge_if_refused(reg, candidate, verdict, Gates()) is None
    entry = challenge_if_refused(reg, candidate, verdict, Gates(shadow_first=True))
    assert "shadow_first" in entry["how"]
    assert read_challenger(reg)["version"] == candidate


def test_a_winning_challenger_is_promoted_with_shadow_evidence(reg):
    """Check that a passed shadow verdict moves the champion with evidence: shadow in history
    and in the sealed pointer, and retires the challenger as promoted."""
    champion, candidate = served(reg)
    challenge(reg, candidate, reason="try it")
    entry = settle(reg, shadow(reg, "passed", champion=champion, challenger=candidate))
    assert entry["action"] == "promote" and entry["evidence"] == SHADOW
    assert entry["previous"] == champion and entry["verdict"]["rows"] == 900
    pointer = reg.champion()
    assert pointer["version"] == candidate and pointer["history_entry"]["evidence"] == SHADOW
    assert read_challenger(reg) is None
    assert reg.history()[-1]["action"] == "retire" and reg.history()[-1]["status"] == "promoted"


def test_a_losing_challenger_is_retired_with_its_verdict(reg):
    """Check that a rejected shadow verdict retires the challenger as lost with the verdict,
    and leaves the champion; a refused one (too few positives) keeps it shadowing."""
    champion, candidate = served(reg)
    challenge(reg, candidate, reason="try it")
    assert settle(reg, shadow(reg, "refused", champion=champion, challenger=candidate)) is None
    assert read_challenger(reg)["version"] == candidate
    entry = settle(reg, shadow(reg, "rejected", champion=champion, challenger=candidate))
    assert entry["action"] == "retire" and entry["status"] == "lost"
    assert entry["verdict"]["status"] == "rejected" and read_challenger(reg) is None
    assert reg.champion()["version"] == champion


def test_manual_approval_of_a_shadow_winner(reg):
    """Check that with gates.approval manual a passed shadow verdict records shadow-pending,
    and `models approve` then promotes it with evidence: shadow."""
    champion, candidate = served(reg)
    challenge(reg, candidate, reason="try it")
    verdict = shadow(reg, "passed", champion=champion, challenger=candidate)
    entry = settle(reg, verdict, approval="manual")
    assert entry["action"] == "shadow-pending" and entry["status"] == "pending"
    assert reg.champion()["version"] == champion
    decision = decide_pending(reg, "fraud", candidate, approved=True, reason="looks right")
    assert decision.promoted and decision.entry["evidence"] == SHADOW
    assert reg.champion()["version"] == candidate and read_challenger(reg) is None


def test_the_command_names_and_clears_the_challenger(reg):
    """Check that `models challenge VERSION` names the challenger and `--clear` retires it,
    each a history record with the reason, the champion unchanged."""
    champion, candidate = served(reg)
    code, out = cli(reg, candidate, "--reason", "after the drift")
    assert code == 0 and f"{candidate} is the challenger, shadowing champion {champion}" in out
    code, out = cli(reg, "--clear")
    assert code == 0 and f"{candidate} is no longer the challenger" in out
    start, end = reg.history()[-2:]
    assert (start["action"], start["reason"]) == ("challenge", "after the drift")
    assert (end["action"], end["status"], end["reason"]) == ("retire", "cleared",
                                                             "cleared by hand")
    assert read_challenger(reg) is None and reg.champion()["version"] == champion


@pytest.mark.parametrize("action, status, withheld", [
    ("promote", "passed", "was promoted"), ("shadow-pending", "passed", "awaits approval"),
    (None, "passed", "awaits approval"),  # a later check of a challenger awaiting approval
    (None, "refused", "is shadowing it"), ("retire", "rejected", None)])
def test_a_drift_the_challenger_answers_emits_no_event(action, status, withheld):
    """Check that the champion's recall drift is not announced (its retraining would replace
    the challenger) while a challenger shadows it, awaits approval or was just promoted, and
    is announced once the challenger lost."""
    from tasks.serving.shadow import drift_withheld

    shadow = {"action": action, "verdict": {"status": status, "challenger": "v0002"}}
    reason = drift_withheld(shadow)
    assert (reason is None) if withheld is None else (withheld in reason)
    assert drift_withheld(None) is None
