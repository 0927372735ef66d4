"""Registry security and governance through the command line and the flows (one Prefect test
harness): a forged version never runs, the preflight fails in seconds, approvals time out into
a rejection, the champion comparison is fair across tables, moves record their actor, and the
key can come from a Prefect Secret block."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.training import training_flow
from schemas.config import Gates, StrategyConfig, TrainingConfig
from schemas.demo import LABEL
from schemas.errors import EXIT_BAD_INPUT, EXIT_REGISTRY
from tasks.data.demo_tables import make_demo_data
from tasks.registry.store import Registry
from tasks.runtime.run_outcome import run_summary

pytestmark = pytest.mark.slow

FAST = StrategyConfig(model="hgb", sampler="none", class_weight="none", calibrate="never")
NAME = "fraud"


def config(data, registry, **kw) -> TrainingConfig:
    return TrainingConfig(data=str(data), label=LABEL, positive="1", registry=str(registry),
                          name=NAME, strategy=FAST, split={"n_folds": 3}, **kw)


def invoke(*args: str):
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output + result.stderr


@pytest.fixture(scope="module")
def trained(copy_small_champion, tmp_path_factory):
    """A copy of the session's small champion (v0001) and a labelled batch."""
    root, data, _ = copy_small_champion(tmp_path_factory.mktemp("security"))
    batch = root / "batch.csv"
    make_demo_data(1500, positive_rate=0.05, seed=9).to_csv(batch, index=False)
    return {"root": root, "data": data, "batch": batch}


@pytest.fixture
def forged(trained, tmp_path, forge, canary):
    """A copy of the trained registry whose champion's model.joblib is a canary payload with
    its sha256 written into metadata.json (the issue's attack)."""
    import shutil

    registry = tmp_path / "registry"
    shutil.copytree(trained["root"] / "registry", registry)
    forge(Registry(registry, NAME).version_dir("v0001"), canary)
    return registry


@pytest.mark.parametrize("command", ["score", "monitor", "train", "show", "promote"])
def test_forged_version_never_runs_through_the_cli(trained, forged, canary, tmp_path, command):
    """Check that `score`, `monitor`, `train` (champion comparison), `models show` and
    `models promote` refuse a forged version with exit 6 naming the file, and its payload
    never runs."""
    common = ["--registry", str(forged), "--name", NAME]
    args = {
        "score": ["score", "--data", str(trained["batch"]), "--out", str(tmp_path / "o.csv")],
        "monitor": ["monitor", "--data", str(trained["batch"])],
        "train": ["train", "--data", str(trained["data"]), "--label", LABEL, "--positive", "1",
                  "--model", "hgb", "--sampler", "none", "--class-weight", "none"],
        "show": ["models", "show", "v0001"],
        "promote": ["models", "promote", "v0001", "--force"],
    }[command]
    code, out = invoke(*args, *common)
    assert code == EXIT_REGISTRY, out
    assert "v0001: metadata.json and model.joblib do not match their signed sha256" in out
    assert not canary.exists()
    assert Registry(forged, NAME).version_ids() == ["v0001"]  # train stopped before training


def test_preflight_fails_in_seconds_before_reading_data(prefect_harness, tmp_path):
    """Check that `train` with a registry path that is a file exits 6 with one line before it
    reads any data (the data path does not even exist, which would be exit 2)."""
    registry = tmp_path / "registry"
    registry.write_text("I am a file")
    started = time.monotonic()
    code, out = invoke("train", "--data", str(tmp_path / "missing.csv"), "--label", LABEL,
                       "--registry", str(registry))
    assert code == EXIT_REGISTRY, out
    assert "is a file, not a directory" in out and "Traceback" not in out
    assert time.monotonic() - started < 60


def test_manual_approval_registers_pending_without_pausing(trained, tmp_path):
    """Check that a training run with manual approval whose gates pass registers the
    candidate as pending and ends (state AwaitingApproval, never Paused), the champion
    untouched, with the candidate in history."""
    from prefect.client.orchestration import get_client

    registry = tmp_path / "registry"
    gates = Gates(approval="manual", approval_timeout_s=2, bootstrap_samples=500)
    state = training_flow(config(trained["data"], registry, gates=gates), return_state=True)
    assert state.is_completed() and state.name == "AwaitingApproval", state.message
    result = state.result()
    assert result["status"] == "pending" and not result["promoted"]
    reg = Registry(registry, NAME)
    assert reg.metadata("v0001")["verdict"]["status"] == "pending"
    assert reg.champion() is None
    assert [(h["action"], h["status"]) for h in reg.history()] == [("register", "pending")]
    with get_client(sync_client=True) as client:
        history = client.read_flow_run_states(state.state_details.flow_run_id)
    assert not any(s.is_paused() for s in history), [s.name for s in history]


def test_approval_without_an_answer_rejects(trained, tmp_path):
    """Check that the approval flow nobody answers rejects the pending candidate when the
    timeout passes: rejected with the reason in history and its verdict, the champion
    unchanged, the run completed (not failed)."""
    from flows.approval import approval_flow
    from tasks.registry.approval import HOW_TIMEOUT, current_verdict

    registry = tmp_path / "registry"
    gates = Gates(approval="manual", approval_timeout_s=2, bootstrap_samples=500)
    assert training_flow(config(trained["data"], registry, gates=gates))["status"] == "pending"
    state = approval_flow(str(registry), NAME, "v0001", return_state=True)
    assert state.is_completed() and state.name == "Rejected", state.message
    decision = state.result()
    assert decision.status == "rejected" and not decision.promoted
    reg = Registry(registry, NAME)
    gate = current_verdict(reg, "v0001")["gates"][-1]
    assert gate["gate"] == "manual_approval" and not gate["passed"]
    assert gate["detail"] == "rejected by timeout: no decision within 2 s"
    last = reg.history()[-1]
    assert (last["action"], last["how"], last["reason"]) == (
        "reject", HOW_TIMEOUT, "no decision within 2 s")
    assert reg.champion() is None


def test_champion_comparison_leaves_out_rows_it_trained_on(trained, tmp_path):
    """Check that a candidate trained on a superset table (Parquet, columns reordered) finds
    the champion's training rows among its test rows by content, leaves them out of the
    comparison and records the overlap."""
    import shutil

    import pandas as pd

    registry = tmp_path / "registry"
    shutil.copytree(trained["root"] / "registry", registry)
    old = pd.read_csv(trained["data"])
    new = make_demo_data(5000, positive_rate=0.05, seed=21)
    superset = pd.concat([old, new], ignore_index=True)
    superset = superset[list(reversed(superset.columns))]
    path = tmp_path / "superset.parquet"
    superset.to_parquet(path, index=False)
    result = run_summary(training_flow(config(path, registry, seed=5), return_state=True))
    overlap = result["verdict"]["comparison"]["overlap"]
    champion_rows = Registry(registry, NAME).train_rows("v0001")
    assert len(champion_rows) == int(len(old) * 0.8)  # the old table's training part
    # a fifth of the superset is tested; of those, the old training part's share was trained on
    expected = overlap["test_rows"] * len(champion_rows) / len(superset)
    assert 0.75 * expected < overlap["champion_trained_on"] < 1.25 * expected
    assert overlap["fair_rows"] == overlap["test_rows"] - overlap["champion_trained_on"] \
        - overlap["candidate_trained_on"]
    row = next(g for g in result["verdict"]["gates"] if g["gate"] == "champion_fair_rows")
    assert f"{overlap['champion_trained_on']} the champion trained on" in row["detail"]
    meta = Registry(registry, NAME).metadata(result["version"])
    assert meta["verdict"]["comparison"]["overlap"] == overlap


@pytest.mark.parametrize("command", ["score", "monitor"])
def test_true_false_in_a_numeric_column_is_bad_input(trained, tmp_path, command):
    """Check that "True"/"False" in a column trained as numeric stops `score` and `monitor`
    with exit 2 naming the column, instead of being scored as 1.0/0.0."""
    import pandas as pd

    batch = pd.read_csv(trained["batch"]).astype({"amount": object})
    batch.loc[:2, "amount"] = ["True", "False", "True"]
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    args = (["score", "--data", str(path), "--out", str(tmp_path / "o.csv")]
            if command == "score" else ["monitor", "--data", str(path)])
    code, out = invoke(*args, "--registry", str(trained["root"] / "registry"), "--name", NAME)
    assert code == EXIT_BAD_INPUT, out
    assert "'amount' was numeric in training but holds 3 true/false values" in out
    assert not (tmp_path / "o.csv").exists()


def test_flow_promotion_records_the_flow_run_as_actor(trained):
    """Check that a promotion made by the training flow names its flow run as the actor."""
    entry = Registry(trained["root"] / "registry", NAME).history()[0]
    assert entry["actor"].startswith("prefect flow run rareflow-train/")
    assert entry["reason"] == "passed every gate" and entry["previous"] is None


def test_signing_key_from_a_prefect_secret_block(prefect_harness, tmp_path, monkeypatch):
    """Check that RAREFLOW_SIGNING_KEY_BLOCK reads the key from a Prefect Secret block, and
    that versions it signs load with it and not with another key."""
    from prefect.blocks.system import Secret

    from schemas.errors import IntegrityError
    from tasks.registry.signing import KEY_BLOCK_ENV, KEY_ENV, signing_key

    Secret(value="b" * 48).save("rareflow-test-signing-key", overwrite=True)
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_BLOCK_ENV, "rareflow-test-signing-key")
    key = signing_key()
    assert key.secret == b"b" * 48 and "Prefect Secret block" in key.source
    reg = Registry(tmp_path / "registry", NAME)
    version = reg.register({"a": 1}, {"verdict": {"status": "passed"}})
    assert Registry(tmp_path / "registry", NAME).load(version)[0] == {"a": 1}
    monkeypatch.setenv(KEY_ENV, "c" * 48)
    with pytest.raises(IntegrityError, match="signed with another key"):
        Registry(tmp_path / "registry", NAME).load(version)
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_BLOCK_ENV, "no-such-block")
    code, out = invoke("models", "show", version, "--registry", str(tmp_path / "registry"),
                       "--name", NAME)
    assert code == EXIT_REGISTRY and "cannot read the Prefect Secret block" in out
