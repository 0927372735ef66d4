"""Manual approval outside the training run: a candidate that passed every gate is registered
as pending; `decide_pending` (and `rareflow models approve|reject`) promotes or rejects it under
the registry's lock, with every decision, and every candidate not promoted, in history."""

from __future__ import annotations

import pytest
from registry_entries import Model, models_cli

from schemas.config import Gates
from schemas.errors import EXIT_OK, EXIT_REGISTRY, EXIT_REJECTED, RegistryError
from tasks.judge.gate_verdict import Verdict
from tasks.registry import champion as champion_module
from tasks.registry.approval import (
    APPROVAL_GATE,
    HOW_CLI,
    HOW_TIMEOUT,
    NotPending,
    current_verdict,
    decide_pending,
    pending_verdict,
)
from tasks.registry.store import Registry

GATES = [{"gate": "min_recall", "passed": True, "value": 0.5, "point": 0.6, "limit": 0.3,
          "detail": ""}]


def meta(status="passed", compared_with=None):
    return {"verdict": {"status": status, "gates": GATES}, "compared_with": compared_with}


def champion(reg: Registry):
    return (reg.champion() or {}).get("version")




@pytest.mark.parametrize("approval, status, expected", [
    ("manual", "passed", "pending"),
    ("none", "passed", "passed"),
    ("manual", "rejected", "rejected"),
    ("manual", "refused", "refused"),
])
def test_pending_only_when_manual_and_every_gate_passed(approval, status, expected):
    """Check that only a passed verdict under manual approval becomes pending."""
    verdict = Verdict.from_dict({"status": status, "gates": GATES})
    out = pending_verdict(verdict, Gates(approval=approval, approval_timeout_s=30)).as_dict()
    assert out["status"] == expected and verdict.status == status
    assert out["gates"] == GATES  # stored as before: metadata.json keeps its format
    if expected == "pending":
        assert out["approval"] == {"requested": True, "timeout_s": 30}


def test_pending_candidate_is_kept_not_promoted(reg):
    """Check that publishing a pending candidate registers it without moving the champion,
    records it in history, and lists it as pending."""
    v1 = reg.publish(Model(1), meta(), compared_with=None, promote_reason="gates").version
    published = reg.publish(Model(2), meta("pending", v1), compared_with=v1,
                            promote_reason="gates")
    assert (published.status, published.champion, champion(reg)) == ("pending", v1, v1)
    last = reg.history()[-1]
    assert (last["action"], last["version"], last["status"]) == ("register", "v0002", "pending")
    assert "awaiting a manual approval" in last["reason"]
    assert reg.summaries().set_index("version")["status"].to_dict() == {
        "v0001": "passed", "v0002": "pending"}


def test_pending_candidate_is_stale_when_the_champion_moved_while_it_trained(reg):
    """Check that a pending candidate compared with an older champion is registered stale."""
    v1 = reg.register(Model(1), meta())
    reg.promote(v1, reason="first")
    published = reg.publish(Model(2), meta("pending", None), compared_with=None,
                            promote_reason="gates")
    assert published.status == "stale" and champion(reg) == v1
    assert reg.metadata(published.version)["verdict"]["status"] == "stale"


def test_approve_promotes_and_records_actor_reason_how(reg):
    """Check that approving a pending version promotes it, with actor, reason and how in the
    history record, and its current verdict carries the manual_approval gate."""
    v1 = reg.register(Model(1), meta("pending", None))
    decision = decide_pending(reg.root, reg.name, v1, approved=True, reason="  looks  good ",
                              actor="alice")
    assert (decision.status, decision.champion, decision.promoted) == ("passed", v1, True)
    assert champion(reg) == v1
    entry = reg.history()[-1]
    assert (entry["action"], entry["decision"], entry["status"], entry["actor"],
            entry["reason"], entry["how"]) == ("promote", "approved", "passed", "alice",
                                               "looks good", HOW_CLI)
    assert reg.champion()["history_entry"]["event_id"] == entry["event_id"]
    verdict = current_verdict(reg, v1)
    assert verdict["status"] == "passed" and verdict["gates"][-1]["gate"] == APPROVAL_GATE
    assert verdict["gates"][-1]["passed"] and verdict["approval"]["reason"] == "looks good"
    assert reg.metadata(v1)["verdict"]["status"] == "pending"  # the version never changes


def test_reject_keeps_the_champion(reg):
    """Check that rejecting a pending version leaves the champion and records the rejection
    (default actor: the OS user@host)."""
    v1 = reg.register(Model(1), meta())
    reg.promote(v1, reason="first")
    v2 = reg.register(Model(2), meta("pending", v1))
    decision = decide_pending(reg, reg.name, v2, approved=False, reason="holiday data",
                              how=HOW_TIMEOUT)
    assert (decision.status, decision.champion, champion(reg)) == ("rejected", v1, v1)
    entry = reg.history()[-1]
    assert (entry["action"], entry["decision"], entry["reason"], entry["how"],
            entry["previous"]) == ("reject", "rejected", "holiday data", HOW_TIMEOUT, v1)
    assert entry["actor"] == champion_module.current_actor() and "@" in entry["actor"]
    assert reg.summaries().set_index("version").loc[v2, "status"] == "rejected"
    gate = current_verdict(reg, v2)["gates"][-1]
    assert not gate["passed"] and gate["detail"] == f"rejected {HOW_TIMEOUT}: holiday data"


def test_approval_after_the_champion_moved_is_stale(reg):
    """Check that approving a candidate compared with a champion that has since changed does
    not promote it but marks it stale, in history."""
    v1 = reg.register(Model(1), meta())
    reg.promote(v1, reason="first")
    v2 = reg.register(Model(2), meta("pending", v1))
    v3 = reg.register(Model(3), meta())
    reg.promote(v3, reason="a later run won")
    decision = decide_pending(reg, reg.name, v2, approved=True, reason="ok", actor="bob")
    assert (decision.status, champion(reg), decision.promoted) == ("stale", v3, False)
    entry = reg.history()[-1]
    assert (entry["action"], entry["status"], entry["actor"]) == ("approve", "stale", "bob")
    assert f"changed from {v1} to {v3}" in entry["reason"]
    with pytest.raises(RegistryError, match="status 'stale'"):
        reg.promote(v2, reason="try")


@pytest.mark.parametrize("status", ["passed", "rejected", "refused", "stale"])
def test_deciding_a_version_not_pending_is_refused(reg, status):
    """Check that only a pending version can be decided: the error names version and
    status, and nothing moves."""
    version = reg.register(Model(1), meta(status))
    before = reg.history()
    with pytest.raises(NotPending, match=rf"fraud {version} is not awaiting approval "
                                         rf"\(status '{status}'\)"):
        decide_pending(reg, reg.name, version, approved=True, reason="x")
    assert reg.history() == before and reg.champion() is None


def test_a_pending_version_is_decided_once(reg):
    """Check that a second decision on the same version is refused, naming its status."""
    v1 = reg.register(Model(1), meta("pending", None))
    decide_pending(reg, reg.name, v1, approved=False, reason="no")
    with pytest.raises(NotPending, match="status 'rejected'"):
        decide_pending(reg, reg.name, v1, approved=True, reason="changed my mind")
    assert reg.champion() is None


def test_a_pending_version_needs_approval_not_promote(reg):
    """Check that `models promote` of a pending version points at `models approve`."""
    v1 = reg.register(Model(1), meta("pending", None))
    code, out = models_cli(reg, "promote", v1)
    assert code == EXIT_REGISTRY and "status 'pending'" in out and "models approve" in out


def test_cli_approve_and_reject_exit_statuses(reg):
    """Check `models approve` exits 0 (promoted), `models reject` and a stale approval 3,
    deciding a version not pending 6; `models show` and `models list` show the status."""
    v1 = reg.register(Model(1), meta("pending", None))
    code, out = models_cli(reg, "list")
    assert code == EXIT_OK and "pending" in out
    code, out = models_cli(reg, "approve", v1, "--reason", "fine", "--actor", "carol")
    assert code == EXIT_OK and "approved and promoted" in out and "carol" in out
    v2 = reg.register(Model(2), meta("pending", v1), card="# fraud {version}")
    code, out = models_cli(reg, "show", v2)
    assert code == EXIT_OK and "pending" in out and f"approve|reject {v2}" in out
    code, out = models_cli(reg, "reject", v2, "--reason", "not now")
    assert code == EXIT_REJECTED and "rejected" in out
    code, out = models_cli(reg, "show", v2)
    assert "Status: rejected (rejected on the command line by" in out and "not now" in out
    v3 = reg.register(Model(3), meta("pending", None))  # compared with no champion
    code, out = models_cli(reg, "approve", v3, "--reason", "late")
    assert code == EXIT_REJECTED and "stale" in out
    code, out = models_cli(reg, "approve", v2, "--reason", "again")
    assert code == EXIT_REGISTRY and f"fraud {v2} is not awaiting approval" in out
    assert champion(reg) == v1


def test_history_records_do_not_change_served_at_or_rollback(reg, monkeypatch):
    """Check that records that moved nothing (candidates not promoted, rejections, stale
    approvals) change neither which version served at a time nor where rollback goes."""
    times = iter(f"2024-03-0{day}T08:00:00+00:00" for day in range(1, 10))
    monkeypatch.setattr(champion_module, "now_iso", lambda: next(times))
    v1 = reg.register(Model(1), meta())
    reg.promote(v1, reason="one")  # 03-01
    reg.publish(Model(2), meta("rejected", v1), compared_with=v1)  # 03-02: register record
    v3 = reg.publish(Model(3), meta("pending", v1), compared_with=v1).version  # 03-03
    decide_pending(reg, reg.name, v3, approved=False, reason="no")  # 03-04
    v4 = reg.publish(Model(4), meta("pending", v1), compared_with=v1).version  # 03-05
    v5 = reg.publish(Model(5), meta("pending", v1), compared_with=v1).version  # 03-06
    decide_pending(reg, reg.name, v4, approved=True, reason="yes")  # 03-07: moves
    decide_pending(reg, reg.name, v5, approved=True, reason="too late")  # 03-08: stale
    actions = [(h["action"], h["version"], h["status"]) for h in reg.history()]
    assert actions == [("promote", v1, "passed"), ("register", "v0002", "rejected"),
                       ("register", v3, "pending"), ("reject", v3, "rejected"),
                       ("register", v4, "pending"), ("register", v5, "pending"),
                       ("promote", v4, "passed"), ("approve", v5, "stale")]
    assert reg.served_at("2024-03-06T09:00")["version"] == v1
    assert reg.served_at("2024-03-08T09:00")["version"] == v4
    assert reg.champion_stack() == [v1, v4]
    code, out = models_cli(reg, "history", "--at", "2024-03-04T09:00")
    assert code == EXIT_OK and f"fraud at 2024-03-04T09:00:00+00:00: {v1}" in out
    code, out = models_cli(reg, "history")
    assert code == EXIT_OK and "register" in out and "on the command line" in out
    entry = reg.rollback(reason="v4 misbehaves")  # 03-09
    assert (entry["version"], entry["previous"], champion(reg)) == (v1, v4, v1)


def test_a_pending_candidate_requests_approval_by_event(monkeypatch, tmp_path):
    """Check that a pending candidate emits rareflow.model.approval-requested (not promoted
    or rejected) with version, absolute registry, name and headline metrics: what the
    `approve` deployment's trigger reads."""
    from tasks.judge.gates import Champion
    from tasks.registry.training_record import announce
    from tasks.runtime import events

    sent = []
    monkeypatch.setattr(events, "emit",
                        lambda event, *, name, payload: sent.append((event, name, payload)))
    monkeypatch.chdir(tmp_path)
    metrics = {"pr_auc": 0.7, "at_threshold": {"recall": 0.6, "normalised_cost": 0.4}}
    announce("fraud", "v0003", "pending", metrics=metrics,
             verdict=Verdict.from_dict({"status": "pending", "gates": GATES}),
             threshold=0.2, champion=Champion(version="v0002"), registry="reg")
    ((event, name, payload),) = sent
    assert (event, name) == (events.APPROVAL_REQUESTED, "fraud")
    assert (payload["version"], payload["registry"], payload["name"]) == (
        "v0003", str(tmp_path / "reg"), "fraud")
    assert (payload["recall"], payload["pr_auc"], payload["champion"]) == (0.6, 0.7, "v0002")


def test_a_forced_promotion_decides_a_pending_version(reg):
    """Check that promoting a pending version with --force records the decision, so it no
    longer shows as pending and cannot be approved again."""
    v1 = reg.register(Model(1), meta("pending", None))
    code, out = models_cli(reg, "promote", v1, "--force", "--reason", "urgent")
    assert code == EXIT_OK, out
    assert reg.log.status(v1, "pending") == "passed"
    code, out = models_cli(reg, "approve", v1, "--reason", "again")
    assert code == EXIT_REGISTRY and "not awaiting approval" in out
