"""The audit trail: every champion move with time, actor, reason and the previous champion;
manual moves emit events; `models history --at`; stale and rejected versions need --force."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from registry_entries import Model, models_cli

from schemas.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REGISTRY
from tasks.registry import champion as champion_module
from tasks.registry.store import Registry

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "registry-0.1"


def meta(status="passed"):
    return {"verdict": {"status": status}}




def test_every_move_records_time_actor_reason_status_and_previous(reg):
    """Check that promotions and rollbacks record when, who, why, the version's status and
    the champion before (and a candidate registered without promotion is recorded too)."""
    v1, v2 = reg.register(Model(1), meta()), reg.register(Model(2), meta("rejected"))
    reg.promote(v1, reason="first model")
    reg.promote(v2, reason="on-call override", forced=True)
    reg.rollback(reason="v2 misbehaves")
    history = reg.history()
    assert [(h["action"], h["version"], h["previous"], h["status"], h["reason"])
            for h in history] == [
        ("register", v2, None, "rejected", "rejected"),
        ("promote", v1, None, "passed", "first model"),
        ("promote", v2, v1, "rejected", "on-call override"),
        ("rollback", v1, v2, "passed", "v2 misbehaves")]
    actor = champion_module.current_actor()
    assert "@" in actor and all(h["actor"] == actor for h in history)
    assert all(pd.Timestamp(h["at"]).tzinfo is not None for h in history)


def test_history_at_answers_which_version_served(reg, monkeypatch):
    """Check that `models history --at` names the version serving at a given time, and
    refuses a time before the first promotion or text that is not a time."""
    v1, v2, v3 = (reg.register(Model(i), meta()) for i in range(3))
    times = iter(["2024-03-01T08:00:00+00:00", "2024-03-02T12:00:00+00:00",
                  "2024-03-03T10:00:00+00:00"])
    monkeypatch.setattr(champion_module, "now_iso", lambda: next(times))
    reg.promote(v1, reason="one")
    reg.promote(v2, reason="two")
    reg.promote(v3, reason="three")
    assert reg.served_at("2024-03-03T09:00")["version"] == v2
    assert reg.served_at("2024-03-03T09:00+01:00")["version"] == v2
    assert reg.served_at("2024-03-03T10:00:00Z")["version"] == v3
    assert reg.served_at("2024-03-01T07:59") is None
    code, out = models_cli(reg, "history", "--at", "2024-03-03T09:00")
    assert code == EXIT_OK and "fraud at 2024-03-03T09:00:00+00:00: v0002" in out
    assert "since 2024-03-02T12:00:00+00:00" in out and "two" in out
    code, out = models_cli(reg, "history", "--at", "2024-02-01")
    assert code == EXIT_REGISTRY and "first promotion was at 2024-03-01T08:00" in out
    code, out = models_cli(reg, "history", "--at", "yesterday-ish")
    assert code == EXIT_BAD_INPUT and "--at must be a time" in out
    code, out = models_cli(reg, "history")
    assert code == EXIT_OK and out.count("promote") == 3 and "actor" in out


def test_stale_version_keeps_its_status_and_needs_force(reg):
    """Check that a candidate that passed but whose champion changed while it trained is
    registered as 'stale' (in its immutable metadata), not promoted, and needs --force to be
    promoted by hand, which keeps that status and records it."""
    v1 = reg.register(Model(1), meta())
    reg.promote(v1, reason="first")
    v2 = reg.register(Model(2), meta())
    reg.promote(v2, reason="a concurrent run won")
    published = reg.publish(Model(3), meta(), compared_with=v1, promote_reason="passed")
    assert (published.status, published.champion) == ("stale", v2)
    verdict = reg.metadata(published.version)["verdict"]
    assert verdict["status"] == "stale" and verdict["stale"]["compared_with"] == v1
    code, out = models_cli(reg, "promote", published.version)
    assert code == EXIT_REGISTRY and "status 'stale'" in out and "--force" in out
    assert reg.champion()["version"] == v2
    code, out = models_cli(reg, "promote", published.version, "--force", "--reason",
                           "checked by hand")
    assert code == EXIT_OK and "[forced]" in out
    last = reg.history()[-1]
    assert (last["version"], last["forced"], last["status"], last["reason"]) == (
        published.version, True, "stale", "checked by hand")
    assert reg.metadata(published.version)["verdict"]["status"] == "stale"


@pytest.mark.parametrize("status", ["rejected", "refused"])
def test_rejected_or_refused_version_needs_force(reg, status):
    """Check that a hand promotion of a version that did not pass is refused without
    --force."""
    reg.promote(reg.register(Model(1), meta()), reason="first")
    version = reg.register(Model(2), meta(status))
    code, out = models_cli(reg, "promote", version)
    assert code == EXIT_REGISTRY and f"status {status!r}" in out


def test_manual_moves_emit_events(reg, monkeypatch):
    """Check that `models promote` and `models rollback` emit rareflow.model.promoted and
    rareflow.model.rolled-back with actor, reason and previous champion when a Prefect
    server is configured, and only record history when none is."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from tasks.runtime import events

    sent = []
    monkeypatch.setattr(events, "emit",
                        lambda event, *, name, payload: sent.append((event, name, payload)))
    v1, v2 = reg.register(Model(1), meta()), reg.register(Model(2), meta())
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert models_cli(reg, "promote", v1, "--reason", "go live")[0] == EXIT_OK
        assert models_cli(reg, "promote", v2)[0] == EXIT_OK
        assert models_cli(reg, "rollback", "--reason", "v2 is slow")[0] == EXIT_OK
    assert [(e, p["version"], p["previous"]) for e, _, p in sent] == [
        (events.PROMOTED, v1, None), (events.PROMOTED, v2, v1),
        (events.ROLLED_BACK, v1, v2)]
    assert sent[0][2]["reason"] == "go live" and sent[2][2]["reason"] == "v2 is slow"
    assert all(p["manual"] and "@" in p["actor"] for _, _, p in sent)
    assert {h["event_id"] for h in reg.history()} == {p["event_id"] for _, _, p in sent}
    with temporary_settings(updates={PREFECT_API_URL: None}):
        assert models_cli(reg, "promote", v2)[0] == EXIT_OK
    assert len(sent) == 3 and len(reg.history()) == 4


def test_models_list_shows_signature_and_sign_signs_old_versions(tmp_path):
    """Check that `models list` shows each version's signature state and `models sign`
    signs a 0.1 registry's versions, after which they load."""
    root = tmp_path / "registry"
    shutil.copytree(FIXTURE, root)
    reg = Registry(root, "old")
    code, out = models_cli(reg, "list")
    assert code == EXIT_OK and out.count("unsigned") == 5
    code, out = models_cli(reg, "show", "v0001")
    assert code == EXIT_REGISTRY and "no signature.json" in out
    code, out = models_cli(reg, "sign")
    assert code == EXIT_OK and out.count(": signed\n") == 5
    assert "identity" in out and "v0001, v0002, v0003, v0004, v0005: signed for this " in out
    code, out = models_cli(reg, "list")
    assert code == EXIT_OK and "unsigned" not in out and out.count(" ok ") == 5
    assert models_cli(reg, "sign")[1].count("already signed") == 5
    code, out = models_cli(reg, "show", "v0001", "--json")
    assert code == EXIT_OK and json.loads(out)["version"] == "v0001"


def test_a_damaged_history_line_is_skipped_by_number(reg, caplog):
    """Check that a history line with a non-UTF-8 byte (or not JSON) is skipped with its line
    number, and `models history` and `models promote` still work (they crashed)."""
    v1, v2 = reg.register(Model(1), meta()), reg.register(Model(2), meta())
    reg.promote(v1, reason="first model")
    with open(reg.dir / "history.jsonl", "ab") as fh:
        fh.write(b'{"action": "promote", "version": "v0002\xff"}\n[1, 2]\n')
    with caplog.at_level("WARNING"):
        assert [h["version"] for h in reg.history()] == [v1]
    assert "history.jsonl line 2 is damaged" in caplog.text
    assert "history.jsonl line 3 is damaged" in caplog.text
    code, out = models_cli(reg, "history")
    assert code == 0 and v1 in out
    code, out = models_cli(reg, "promote", v2, "--reason", "second")
    assert code == 0, out
    assert reg.champion()["version"] == v2


def test_models_list_checks_the_model_bytes(reg):
    """Check that `models list` hashes each version's model.joblib against its signed sha256
    (without unpickling it): a tampered model is listed INVALID with what failed, never as
    signature ok, while an intact version beside it stays ok."""
    from tasks.registry.store import MODEL_FILE

    intact, tampered = reg.register(Model(1), meta()), reg.register(Model(2), meta())
    path = reg.version_dir(tampered) / MODEL_FILE
    path.write_bytes(path.read_bytes() + b"\0")
    code, out = models_cli(reg, "list")
    assert code == EXIT_OK
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.strip().startswith("v000")}
    assert " ok " in rows[intact] and " ok " not in rows[tampered]
    assert "INVALID" in rows[tampered]
    assert f"INVALID fraud {tampered}: model.joblib does not match its signed sha256" in out
