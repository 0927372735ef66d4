"""A real Prefect server, work pool, deployments and worker on loopback, for the e2e tests.

Everything here is package-scoped: one server for every test in tests/e2e, stopped after the last
of them. Every wait is bounded; every process started here is stopped and every automation
created here is deleted in the fixtures' teardown, also when a test fails.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.loopback import free_port

ROOT = Path(__file__).resolve().parents[2]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
VENV_BIN = Path(sys.executable).parent
SERVER_START_S = 180
DEPLOY_S = 300
RUN_S = 300
FAST_STRATEGY = {"model": "hgb", "sampler": "none", "class_weight": "none", "calibrate": "never"}
FAST_TRAINING = {"strategy": FAST_STRATEGY, "split": {"n_folds": 3},
                 "gates": {"bootstrap_samples": 500}}
MODEL = "e2e"
SCORING_OPTIONS = ("time_column", "id_column")  # the source options a ScoringConfig takes
SOURCE_OPTIONS = ("time_column", "window", "as_of", "label_time_column", "label_available_column",
                  "label_delay_days")


# ---------------------------------------------------------------------------------------------
# helpers


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for failure messages."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def wait_until(predicate, *, timeout: float, what: str, interval: float = 1.0, log=None):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            extra = f"\n--- {log} ---\n{tail(log)}" if log else ""
            pytest.fail(f"Timed out after {timeout:.0f} s waiting for {what}{extra}")
        time.sleep(interval)


class Proc:
    """A subprocess in its own session, with its output in a log file."""

    def __init__(self, name: str, args: list[str], *, env: dict, cwd: Path, log: Path):
        self.name, self.log = name, log
        self._out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, env=env, cwd=cwd, stdout=self._out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it is still there after ``grace`` s."""
        try:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                if not self.alive():
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(wait)
        finally:
            self._out.close()


def run_cli(args: list[str], *, env: dict, timeout: float, what: str) -> str:
    """Run a command to completion (bounded); fail the test with its output if it fails."""
    try:
        done = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} did not finish within {timeout:.0f} s: {exc.output}")
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def retarget_prefect_yaml(doc: dict, *, data: str, registry: str, monitoring_data: str,
                          source_options: dict | None = None, name: str = MODEL) -> dict:
    """A copy of the loaded prefect.yaml that trains model ``name`` on test data into a test
    registry.

    Only plain values change: the model (its name in every config, the deployments' names and
    the triggers' resource id, as `rareflow deploy init --name` would write them), ``registry``
    everywhere, ``data`` where it is not an event template (with the source's time options
    dropped unless ``source_options`` says which to set: the test tables are plain files), the
    scored output beside the scoring deployment's data, a
    fast fixed strategy for training, runs of the data-arrived trigger not delayed, and
    schedules switched off so that the scheduler starts nothing during the test. Templates,
    debounce windows and triggers stay as shipped. A deployment whose parameters are not a
    config (``approve-<name>``) gets the test registry as its default ``registry``; its
    trigger takes the registry from the event.
    """
    doc = copy.deepcopy(doc)
    shipped = doc["definitions"]["training_config"]["name"]
    for dep in doc["deployments"]:
        dep["name"] = dep["name"].replace(f"-{shipped}", f"-{name}")
        training = dep["entrypoint"].startswith("flows/training.py")
        scoring = dep["entrypoint"].startswith("flows/scoring.py")
        params = [dep.get("parameters") or {}]
        params += [t["parameters"] for t in dep.get("triggers") or []]
        for param in params:
            if param.get("name") == shipped:
                param["name"] = name
            if "registry" in param and not is_template(param["registry"]):
                param["registry"] = registry
        for cfg in [p["config"] for p in params if "config" in p]:
            cfg["registry"], cfg["name"] = registry, name
            if not is_template(cfg.get("data")):
                cfg["data"] = data if training else monitoring_data
            for key in SOURCE_OPTIONS:
                cfg.pop(key, None)
            cfg.update({k: v for k, v in (source_options or {}).items()
                        if not scoring or k in SCORING_OPTIONS})
            if scoring:  # the scored rows go beside the test data, never into the checkout
                cfg["out"] = f"{cfg['data']}-scored"
            if training:
                cfg.update(copy.deepcopy(FAST_TRAINING))
        for trigger in dep.get("triggers") or []:
            trigger["name"] = trigger["name"].replace(f"{shipped}: ", f"{name}: ")
            trigger["match"] = {"prefect.resource.id": f"rareflow.model.{name}"}
            trigger.pop("schedule_after", None)
        for schedule in dep.get("schedules") or []:
            schedule["active"] = False
    return doc


def automation_name(doc: dict, event: str) -> str:
    """The name of the (first) trigger in ``doc`` that follows ``event``."""
    return next(t["name"] for d in doc["deployments"] for t in d.get("triggers") or []
                if t["expect"] == [event])


def deployment_of(doc: dict, entrypoint_file: str) -> dict:
    """The deployment in ``doc`` whose flow lives in ``entrypoint_file``."""
    return next(d for d in doc["deployments"] if d["entrypoint"].startswith(entrypoint_file))


def existing_deployments(doc: dict) -> list[dict]:
    """Deployments whose flow file exists in this checkout (the monitoring flow may not yet)."""
    return [d for d in doc["deployments"]
            if (ROOT / d["entrypoint"].rpartition(":")[0]).is_file()]


def stop_unfinished_runs(server, worker) -> None:
    """Teardown of a test's own server and worker: cancel every run not yet final, stop the
    worker, and end the flow-run processes it left."""
    from prefect.states import Cancelled

    runs = []
    with contextlib.suppress(Exception), server.client() as client:
        runs = client.read_flow_runs()
        for run in runs:
            if run.state and not run.state.is_final():
                client.set_flow_run_state(run.id, Cancelled(), force=True)
    worker.stop()
    kill_flow_run_processes(runs, server.api_url)


def kill_flow_run_processes(runs, api_url: str) -> None:
    """SIGKILL flow-run processes of this test server that outlived their worker."""
    for run in runs:
        pid = str(run.infrastructure_pid or "").rpartition(":")[2]
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT_API_URL={api_url}".encode() in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# fixtures


def retire_prefect_workers() -> None:
    """Flush the in-process Prefect logs and events to the server they were meant for, then
    stop their worker threads.

    Prefect caches its events worker without the API URL in its key, so a worker left by
    in-process flows or commands (CliRunner) would keep posting to a server after it stops, and
    hang the session harness's drain at the end of the run for minutes.
    """
    import inspect

    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.utilities.asyncutils import run_coro_as_sync

    async def drain():
        with contextlib.suppress(RuntimeError):
            result = APILogWorker.instance().drain()
            if inspect.isawaitable(result):
                await result
        result = EventsWorker.drain_all()
        if inspect.isawaitable(result):
            await result

    run_coro_as_sync(drain())


class Server:
    """What the tests need to know about the running server."""

    def __init__(self, url: str, env: dict, home: Path, logs: Path):
        self.url, self.api_url, self.env, self.home, self.logs = url, f"{url}/api", env, home, logs

    def client(self):
        """A synchronous Prefect client bound to this server."""
        from prefect.client.orchestration import get_client

        return get_client(sync_client=True)


@contextlib.contextmanager
def running_server(base: Path):
    """`prefect server start` on a free loopback port, with PREFECT_HOME under ``base``;
    stopped (its automations deleted first) when the block ends."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    home, logs = base / "home", base / "logs"
    home.mkdir()
    logs.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"{url}/api",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,flows,schemas",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",
    })
    server = Server(url, env, home, logs)
    proc = Proc("server", [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                           "--port", str(port)], env=env, cwd=base, log=logs / "server.log")

    def healthy():
        if not proc.alive():
            pytest.fail(f"prefect server exited early:\n{tail(proc.log)}")
        try:
            return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, timeout=SERVER_START_S, what="the server's /api/health",
                   log=proc.log)
        with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):
            try:
                yield server
            finally:
                # Every automation on this throwaway server is one the tests created.
                with contextlib.suppress(Exception), server.client() as client:
                    for automation in client.read_automations():
                        client.delete_automation(automation.id)
                retire_prefect_workers()  # while the server still answers
    finally:
        proc.stop()


@pytest.fixture(scope="package")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free loopback port, with a temporary PREFECT_HOME."""
    with running_server(tmp_path_factory.mktemp("prefect-e2e")) as server:
        yield server


@pytest.fixture(scope="package")
def prefect_harness():
    """Not for e2e tests: use ``prefect_server``.

    The session's harness enters its own Prefect settings when first requested; requested
    after ``prefect_server`` it would stay stacked over the package server's settings for
    the rest of the session, and every later client call would read the harness's server
    (deployments that `prefect deploy` had just made came back 404)."""
    pytest.fail("an e2e test asked for prefect_harness: use prefect_server (tests/e2e/conftest.py)")


@pytest.fixture(scope="package")
def e2e_data(tmp_path_factory):
    """Tiny training data (5,000 rows, 5 % positives) as CSV, and an empty registry folder."""
    from tasks.data.demo_tables import make_demo_data

    base = tmp_path_factory.mktemp("e2e-data")
    train = base / "train.csv"
    make_demo_data(5000, positive_rate=0.05).to_csv(train, index=False)
    arrived = base / "arrived.csv"
    make_demo_data(5000, positive_rate=0.05, seed=1).to_csv(arrived, index=False)
    return {"train": train, "arrived": arrived, "registry": base / "registry", "dir": base}


@pytest.fixture(scope="package")
def deployed(prefect_server, e2e_data):
    """The work pool created and prefect.yaml's deployments applied with `prefect deploy`.

    Returns the retargeted prefect.yaml (dict), its path, and the pool name.
    """
    shipped = yaml.safe_load(PREFECT_YAML.read_text())
    doc = retarget_prefect_yaml(shipped, data=str(e2e_data["train"]),
                                registry=str(e2e_data["registry"]),
                                monitoring_data=str(e2e_data["arrived"]))
    path = e2e_data["dir"] / "prefect.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    pools = {d["work_pool"]["name"] for d in doc["deployments"]}
    assert len(pools) == 1, f"expected one work pool in prefect.yaml, got {pools}"
    pool = pools.pop()
    env = prefect_server.env
    prefect = str(VENV_BIN / "prefect")
    run_cli([prefect, "work-pool", "create", pool, "--type", "process"], env=env, timeout=120,
            what="prefect work-pool create")
    present = existing_deployments(doc)
    selection = (["--all"] if len(present) == len(doc["deployments"])
                 else [arg for d in present for arg in ("--name", d["name"])])
    try:
        output = run_cli([prefect, "--no-prompt", "deploy", *selection, "--prefect-file",
                          str(path)], env=env, timeout=DEPLOY_S, what="prefect deploy")
        (prefect_server.logs / "deploy.log").write_text(output)
        yield {"doc": doc, "path": path, "pool": pool, "deployed": present}
    finally:
        with contextlib.suppress(Exception), prefect_server.client() as client:
            for dep in present:
                flow_name = _flow_name(dep)
                found = client.read_deployment_by_name(f"{flow_name}/{dep['name']}")
                client.delete_resource_owned_automations(f"prefect.deployment.{found.id}")


def _flow_name(dep: dict) -> str:
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(str(ROOT / dep["entrypoint"])).name


@pytest.fixture(scope="package")
def worker(prefect_server, deployed):
    """`prefect worker start --pool <pool>` as a subprocess; stops it and its runs afterwards."""
    from prefect.states import Cancelled, Cancelling

    proc = Proc("worker", [str(VENV_BIN / "prefect"), "worker", "start", "--pool",
                           deployed["pool"], "--type", "process"],
                env=prefect_server.env, cwd=ROOT, log=prefect_server.logs / "worker.log")

    def online():
        if not proc.alive():
            pytest.fail(f"prefect worker exited early:\n{tail(proc.log)}")
        with prefect_server.client() as client:
            status = client.read_work_pool(deployed["pool"]).status
        return getattr(status, "value", status) == "READY"

    try:
        wait_until(online, timeout=120, what="the worker to come online", log=proc.log)
        yield proc
    finally:
        runs = []
        with contextlib.suppress(Exception), prefect_server.client() as client:
            runs = client.read_flow_runs()
            unfinished = [r for r in runs if r.state and not r.state.is_final()]
            for run in unfinished:
                state = Cancelling() if run.state.is_running() else Cancelled()
                client.set_flow_run_state(run.id, state, force=True)
            deadline = time.monotonic() + 20
            while unfinished and time.monotonic() < deadline:
                time.sleep(1)
                unfinished = [r for r in unfinished
                              if not client.read_flow_run(r.id).state.is_final()]
        proc.stop()
        kill_flow_run_processes(runs, prefect_server.api_url)


def wait_for_run(server: Server, flow_run_id, *, timeout: float = RUN_S, log=None):
    """Poll a flow run until it reaches a final state; return it."""
    def final():
        with server.client() as client:
            run = client.read_flow_run(flow_run_id)
        return run if run.state and run.state.is_final() else None

    return wait_until(final, timeout=timeout, interval=2, log=log,
                      what=f"flow run {flow_run_id} to finish")


@pytest.fixture(scope="package")
def training_deployment(deployed):
    """The full name of the training deployment ('rareflow-train/<name>')."""
    dep = next(d for d in deployed["doc"]["deployments"]
               if d["entrypoint"].startswith("flows/training.py"))
    return f"{_flow_name(dep)}/{dep['name']}"


@pytest.fixture(scope="package")
def trained_run(prefect_server, worker, training_deployment, e2e_data):
    """One finished run of the training deployment, started through the API with parameters."""
    from prefect.deployments import run_deployment

    config = {"data": str(e2e_data["train"]), "label": "is_fraud", "positive": "1",
              "registry": str(e2e_data["registry"]), "name": MODEL, **FAST_TRAINING}
    started = run_deployment(training_deployment, parameters={"config": config}, timeout=0)
    run = wait_for_run(prefect_server, started.id, log=worker.log)
    return {"run": run, "config": config}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """moto's S3 server on a free 127.0.0.1 port (fake credentials), stopped by its pid."""
    from tests.e2e.s3_server import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3") / "moto.log") as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """This process reaches the S3 server through the standard AWS variables."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory):
    """Azurite's blob service on a free 127.0.0.1 port (the development account), stopped by
    its pid. Skipped where Azurite is not installed, except in CI (.ci/needs-e2e.sh installs
    it there), where its absence fails."""
    from tests.e2e.azure_server import azurite_command, running_azure_server

    if azurite_command() is None:
        message = "Azurite is not installed: `npm ci --prefix .ci/azurite`"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    with running_azure_server(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """fake-gcs-server on a free 127.0.0.1 port (anonymous, through STORAGE_EMULATOR_HOST),
    stopped by its pid."""
    from tests.e2e.gcs_server import running_gcs_server

    with running_gcs_server(tmp_path_factory.mktemp("gcs")) as server:
        yield server


SCHEMES = {"s3": "s3", "azure": "az", "gcs": "gs"}


class Cloud:
    """One object storage server (S3's moto, Azure's Azurite, GCS's fake-gcs-server) behind
    the few calls the registry tests make: a fresh root URL, the environment that reaches it,
    and writes and listings behind rareflow's back."""

    def __init__(self, name: str, server):
        self.name, self.server = name, server

    def env(self) -> dict[str, str]:
        return self.server.env()

    def new_root(self, prefix: str = "reg") -> str:
        if self.name == "azure":
            return f"az://{self.server.new_container()}/{prefix}"
        return f"{SCHEMES[self.name]}://{self.server.new_bucket()}/{prefix}"

    @staticmethod
    def _split(root: str) -> tuple[str, str]:
        bucket, _, prefix = root.split("://", 1)[1].partition("/")
        return bucket, prefix

    def put(self, root: str, key: str, data: bytes) -> None:
        """Write ``key`` (relative to ``root``) directly on the server."""
        bucket, prefix = self._split(root)
        self.server.put(bucket, f"{prefix}/{key}" if prefix else key, data)

    def keys(self, root: str, under: str) -> list[str]:
        """The server's keys under ``root``/``under``, relative to ``root``."""
        bucket, prefix = self._split(root)
        base = f"{prefix}/" if prefix else ""
        return [n[len(base):] for n in self.server.keys(bucket, base + under)]


@pytest.fixture(params=["s3", "azure", "gcs"])
def cloud(request, monkeypatch):
    """Each object storage rareflow's registry runs on, its server on loopback and this
    process's environment reaching it (the cloud's standard variables)."""
    server = request.getfixturevalue(f"{request.param}_server")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    return Cloud(request.param, server)
