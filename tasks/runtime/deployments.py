"""A model's deployments, generated: its ``rareflow.yaml`` (the project file the command line
reads) and a ``prefect.yaml`` whose deployments (nightly and event-triggered retraining,
daily monitoring, approval, scoring as data lands) carry this model's label, data source and
registry, with triggers that match only this model's events (resource id
``rareflow.model.<name>``).

The shipped ``deployments/prefect.yaml`` is this output for the demo (:data:`DEMO`); a test
keeps them equal. ``rareflow deploy init`` (flows/cli_deploy.py) writes the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from schemas.config import (
    PROJECT_FILE,
    WINDOW_PATTERN,
    MonitoringConfig,
    TrainingConfig,
    check_name,
    check_window,
)
from schemas.errors import ConfigError
from schemas.scored import SCORED_DEFAULT_SUFFIX
from schemas.scoring import ScoringConfig

PREFECT_FILE = "prefect.yaml"
POOL = "rareflow"
TRAIN_WINDOW, MONITOR_WINDOW = "90d", "60d"
RETRAIN_CRON, MONITOR_CRON = "0 2 * * *", "0 6 * * *"
SCORE_CRON = "30 * * * *"  # the scoring deployment's safety net: hourly, beside its trigger
# Debounce of the data-arrived trigger: one run per burst of arrivals (`within`), started
# `schedule_after` seconds after the first, when the rest of a burst has landed.
DEBOUNCE_WITHIN_S, DEBOUNCE_AFTER_S = 900, 600
APPROVAL_ENTRYPOINT = "flows/approval.py:approval_flow"


@dataclass(frozen=True)
class ModelDeployment:
    """What a model's deployments need: the options of ``rareflow deploy init``."""

    name: str
    data: str
    label: str
    positive: str | None = None
    registry: str = TrainingConfig.model_fields["registry"].default
    time_column: str | None = None
    label_time_column: str | None = None
    window: str | None = None  # default: TRAIN_WINDOW with a time column, else every row
    pool: str = POOL
    scored: str | None = None  # where the score deployment writes: default `<data>-scored`
    id_column: str | None = None  # the source's row key (default: a fingerprint of the row)

    @property
    def scored_out(self) -> str:
        return self.scored or f"{self.data.rstrip('/')}{SCORED_DEFAULT_SUFFIX}"

    @property
    def train_window(self) -> str | None:
        return self.window or (TRAIN_WINDOW if self.time_column else None)

    def command(self, out_dir: str = ".") -> str:
        """The ``rareflow deploy init`` command line that writes these files."""
        flags = {"name": self.name, "data": self.data, "label": self.label,
                 "positive": self.positive, "registry": self.registry,
                 "time-column": self.time_column, "label-time-column": self.label_time_column,
                 "window": self.window, "scored": self.scored, "id-column": self.id_column,
                 "out-dir": out_dir if out_dir != "." else None,
                 "pool": self.pool if self.pool != POOL else None}
        return "rareflow deploy init " + " ".join(
            f"--{k} {v}" for k, v in flags.items() if v is not None)


# The demo's model: what `rareflow demo` writes in the repository root.
DEMO = ModelDeployment(name="demo", data="rareflow-demo/source", label="is_fraud", positive="1",
                       registry="rareflow-demo/registry", time_column="event_time",
                       label_time_column="label_time")
DEMO_OUT_DIR = "deployments"


def deployment_names(name: str) -> dict[str, str]:
    """The deployments of model ``name`` (one set per model can live on a server)."""
    return {"retrain": f"retrain-{name}", "monitor": f"monitor-{name}",
            "approve": f"approve-{name}", "score": f"score-{name}"}


def _q(value) -> str:
    """A YAML scalar for any text (JSON strings are YAML double-quoted scalars)."""
    return json.dumps(str(value))


def _source_lines(spec: ModelDeployment) -> list[str]:
    lines = [f"    data: {_q(spec.data)}"]
    for key in ("time_column", "label_time_column"):
        if getattr(spec, key):
            lines.append(f"    {key}: {_q(getattr(spec, key))}")
    return lines


def _definitions(spec: ModelDeployment) -> str:
    training = [f"    window: {_q(spec.train_window)}"] if spec.train_window else []
    training += [f"    label: {_q(spec.label)}"]
    training += [f"    positive: {_q(spec.positive)}"] if spec.positive is not None else []
    monitoring = [f"    window: {_q(MONITOR_WINDOW)}"] if spec.time_column else []
    model = [f"    registry: {_q(spec.registry)}", f"    name: {_q(spec.name)}"]
    scoring = [f"    data: {_q(spec.data)}", f"    out: {_q(spec.scored_out)}"]
    scoring += [f"    {key}: {_q(getattr(spec, key))}" for key in ("time_column", "id_column")
                if getattr(spec, key)]
    return "\n".join([
        "definitions:",
        "  source: &source", *_source_lines(spec),
        "  training_config: &training_config", "    <<: *source", *training, *model,
        "  monitoring_config: &monitoring_config", "    <<: *source", *monitoring, *model,
        "  scoring_config: &scoring_config", *scoring, *model,
        "  work_pool: &work_pool",
        f"    name: {_q(spec.pool)}",
        "    job_variables:",
        "      env:",
        "        # Log records of the plain-code loggers reach the run's logs in the UI.",
        "        PREFECT_LOGGING_EXTRA_LOGGERS: tasks,flows,schemas",
        "  # The event that started a run, for the training flow's `trigger` parameter: it trains",
        "  # on the payload's `source` (each a single expression, so types are kept).",
        "  event_trigger: &event_trigger",
        '    event: "{{ event.event }}"',
        '    payload: "{{ event.payload }}"',
    ])


HEADER = """\
# rareflow deployments of model {name}: nightly and event-triggered retraining, daily
# monitoring, approval on request, scoring of new partitions as they land. Generated by this
# command (to change a setting, run it again with --force rather than editing here):
#   {command}
#
# Deploy from the repository root (entrypoints and the runs' working directory are relative to it):
#   prefect work-pool create {pool} --type process
#   prefect --no-prompt deploy --all --prefect-file {path}
#   prefect worker start --pool {pool}
# docs/production.md walks through it; deployments/serve.py serves the same set without a pool.
#
# Parameters are the pydantic models of schemas/ (TrainingConfig, MonitoringConfig and
# ScoringConfig): the server validates every run against their schema and the UI draws its form
# from them, field descriptions included. A run fills every field that is not given here from
# the model's default.
# Relative paths resolve against the runs' working directory: where `prefect deploy` ran.
#
# Every run trains on, or monitors, the source's current window, never a fixed file: the nightly
# run as of its start, a drift-triggered run as of the check that found the drift, a
# data-triggered run as of the newest data in the source when it starts (tasks/data/arrivals.py:
# run_config). The triggers match only this model's events (resource id rareflow.model.{name}),
# so each model's deployments train that model alone.

name: rareflow
"""

DEPLOY_PREAMBLE = """
build: null
push: null
# No `pull` section: `prefect deploy` then adds a set_working_directory step with the directory
# it was run from (the repository root), so workers import `flows`, `tasks` and `schemas` there.

deployments:"""


def _trigger(name: str, title: str, description: str, expect: str, extra: list[str],
             parameters: list[str]) -> list[str]:
    return ["      - type: event", f"        name: {_q(f'{name}: {title}')}",
            f"        description: {description}", "        enabled: true",
            "        match:", f"          prefect.resource.id: rareflow.model.{name}",
            "        expect:", f"          - {expect}", *extra, "        parameters:",
            *parameters]


def _retrain(spec: ModelDeployment, names: dict) -> list[str]:
    from tasks.runtime import events  # imports Prefect: not when the command line starts

    train_params = ["          config: *training_config", "          trigger: *event_trigger"]
    return [
        f"  - name: {names['retrain']}",
        "    description: >-",
        f"      Train, judge and (if every gate passes) promote model {spec.name} on its data",
        "      source's current window: nightly, when monitoring reports recall drift, and when",
        "      new data lands in its source.",
        "    entrypoint: flows/training.py:training_flow",
        "    tags: [rareflow, training]",
        "    enforce_parameter_schema: true",
        "    # One training at a time: a run triggered while another trains waits its turn",
        "    # (never dropped: a recall-drift retrain must happen). Bursts are coalesced by the",
        "    # trigger below.",
        "    concurrency_limit:", "      limit: 1", "      collision_strategy: ENQUEUE",
        "    parameters:", "      config: *training_config",
        "    work_pool: *work_pool",
        "    schedules:", f"      - cron: {_q(RETRAIN_CRON)}", "        timezone: UTC",
        "        active: true",
        "    triggers:",
        "      # Emitted by the monitoring flow; payload: model, version, recall figures, the",
        "      # estimate, and the source, as_of and since to retrain on.",
        *_trigger(spec.name, "retrain on recall drift",
                  f"Retrain {spec.name} on its source's window as of the check that found the "
                  "drift.", events.RECALL_DRIFT, [], train_params),
        "      # Emitted by `rareflow ingest`; payload: source, partition(s), rows, as_of.",
        "      # Debounce: the first arrival fires, the others within 15 minutes are absorbed",
        "      # (reactive, threshold 1), and the run starts 10 minutes after the first, when the",
        "      # rest of a burst of partitions has landed. The run trains as of the newest data in",
        "      # the source when it starts (never earlier than the event's as_of), so every batch",
        "      # that landed by then is in (docs/production.md, section 6).",
        *_trigger(spec.name, "train on arrived data",
                  f"Train {spec.name} on the payload's source as of its newest data; one run "
                  "per burst of arrivals.", events.DATA_ARRIVED,
                  ["        for_each:", "          - prefect.resource.id",
                   "        posture: Reactive", "        threshold: 1",
                   f"        within: {DEBOUNCE_WITHIN_S}",
                   f"        schedule_after: {DEBOUNCE_AFTER_S}"], train_params),
    ]


def _monitor(spec: ModelDeployment, names: dict) -> list[str]:
    return [
        "", f"  - name: {names['monitor']}",
        "    description: >-",
        f"      Judge the serving version of {spec.name} on the labels of its data source that",
        "      matured since its last check, estimate recall for rows still awaiting labels, and",
        "      on recall drift emit rareflow.monitor.recall-drift, which triggers",
        f"      {names['retrain']}.",
        "    entrypoint: flows/monitoring.py:monitoring_flow",
        "    tags: [rareflow, monitoring]",
        "    enforce_parameter_schema: true",
        "    parameters:", "      config: *monitoring_config",
        "    work_pool: *work_pool",
        "    schedules:", f"      - cron: {_q(MONITOR_CRON)}", "        timezone: UTC",
        "        active: true",
    ]


def _approve(spec: ModelDeployment, names: dict) -> list[str]:
    from tasks.runtime import events  # imports Prefect: not when the command line starts

    return [
        "", f"  - name: {names['approve']}",
        "    description: >-",
        f"      Ask a person to approve or reject a candidate of {spec.name} that passed every",
        f"      gate under `gates.approval: manual` (registered as pending by {names['retrain']}):",
        "      the run pauses with a Resume form (gate table, approve, reason, approver); no",
        "      answer within the version's approval_timeout_s rejects it. `rareflow models",
        "      approve|reject` decides too.",
        f"    entrypoint: {APPROVAL_ENTRYPOINT}",
        "    tags: [rareflow, approval]",
        "    enforce_parameter_schema: true",
        "    # No concurrency limit: a paused run must hold no slot (the retraining's lease would",
        "    # be released under a paused run and the run crashed; that is why approval is a flow",
        "    # of its own). No schedule: it runs when a candidate waits for a decision.",
        "    parameters:", f"      registry: {_q(spec.registry)}", f"      name: {_q(spec.name)}",
        "    work_pool: *work_pool",
        "    triggers:",
        "      # Emitted by the training flow for a pending candidate; payload: version, registry",
        "      # (an absolute path), name, status, threshold, recall, pr_auc, normalised_cost,",
        "      # champion.",
        *_trigger(spec.name, "approval requested",
                  f"Ask for a decision on the pending {spec.name} version named in the request.",
                  events.APPROVAL_REQUESTED, [],
                  ['          registry: "{{ event.payload.registry }}"',
                   f"          name: {_q(spec.name)}",
                   '          version: "{{ event.payload.version }}"']),
    ]


def _score(spec: ModelDeployment, names: dict) -> list[str]:
    from tasks.runtime import events  # imports Prefect: not when the command line starts

    return [
        "", f"  - name: {names['score']}",
        "    description: >-",
        f"      Score the partitions of {spec.name}'s data source not yet scored with the",
        "      champion, into the scored source (a partition each, atomically, remembered by",
        "      sha256): when data lands, and hourly as a safety net.",
        "    entrypoint: flows/scoring.py:scoring_flow",
        "    tags: [rareflow, scoring]",
        "    enforce_parameter_schema: true",
        "    # One scoring at a time: each run scores what is not scored yet, so a burst of",
        "    # arrivals queues runs that find their partitions scored by the first (each",
        "    # partition is scored once; an arrival during a run is scored by the next).",
        "    concurrency_limit:", "      limit: 1", "      collision_strategy: ENQUEUE",
        "    parameters:", "      config: *scoring_config",
        "    work_pool: *work_pool",
        "    schedules:", f"      - cron: {_q(SCORE_CRON)}", "        timezone: UTC",
        "        active: true",
        "    triggers:",
        "      # Emitted by `rareflow ingest`; payload: source, partition(s), rows, as_of. The",
        "      # run scores every partition of the model's source not scored yet.",
        *_trigger(spec.name, "score arrived data",
                  f"Score the new partitions of {spec.name}'s source with the champion.",
                  events.DATA_ARRIVED, [], ["          config: *scoring_config"]),
    ]


def check_spec(spec: ModelDeployment) -> ModelDeployment:
    """Refuse options no run could use (a bad name, window or config), in one line.

    Raises:
        ConfigError: naming the option and what to do.
    """
    try:
        check_name(spec.name)
    except ValueError as exc:
        raise ConfigError(f"--name: {exc}") from exc
    try:
        window = check_window(spec.window)
    except ValueError as exc:
        raise ConfigError(f"--window: {exc}") from exc
    data, scored = Path(spec.data).absolute(), Path(spec.scored_out).absolute()
    if scored == data or data in scored.parents:
        raise ConfigError(f"--scored {spec.scored_out} is inside the source {spec.data}: its "
                          "partitions would be read as input; choose a folder beside it")
    if window and not spec.time_column and WINDOW_PATTERN.fullmatch(window).group(2) != "rows":
        raise ConfigError(f"--window {spec.window} is a span of time: give --time-column (the "
                          "column with each row's event time) or a window of rows (50000rows)")
    return spec


def render_prefect_yaml(spec: ModelDeployment, out_dir: str | Path = ".") -> str:
    """The model's prefect.yaml as written into ``out_dir``, comments included; every config
    in it validated.

    Raises:
        ConfigError: an option the configs refuse (bad window, name, ...).
    """
    check_spec(spec)
    names = deployment_names(spec.name)
    path = (Path(out_dir) / PREFECT_FILE).as_posix()
    text = "\n".join([
        HEADER.format(name=spec.name, command=spec.command(Path(out_dir).as_posix()),
                      pool=spec.pool, path=path).rstrip("\n"),
        "", _definitions(spec), DEPLOY_PREAMBLE,
        *_retrain(spec, names), *_monitor(spec, names), *_approve(spec, names),
        *_score(spec, names), ""])
    _validate(text)
    return text


def _validate(text: str) -> None:
    """Every config of a rendered prefect.yaml, as the server will validate it."""
    from pydantic import ValidationError

    doc = yaml.safe_load(text)
    defs = doc["definitions"]
    try:
        TrainingConfig.model_validate(defs["training_config"])
        MonitoringConfig.model_validate(defs["monitoring_config"])
        ScoringConfig.model_validate(defs["scoring_config"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"the deployments' config is invalid: {where}: {first['msg']} (got "
                          f"{first.get('input')!r}); fix that option") from exc


def render_project_yaml(spec: ModelDeployment) -> str:
    """The model's ``rareflow.yaml``: the registry and name commands run there default to."""
    return yaml.safe_dump({"registry": str(spec.registry), "name": spec.name}, sort_keys=False)


def write_deployment_files(spec: ModelDeployment, out_dir: str | Path = ".", *,
                           force: bool = False) -> list[Path]:
    """Write ``prefect.yaml`` and ``rareflow.yaml`` into ``out_dir``; returns their paths.

    Raises:
        ConfigError: a file exists and ``force`` is off (nothing is written then).
    """
    out = Path(out_dir)
    texts = {out / PREFECT_FILE: render_prefect_yaml(spec, out),
             out / PROJECT_FILE: render_project_yaml(spec)}
    existing = [p for p in texts if p.exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists: pass --force to overwrite it, or --out-dir "
                          "another folder")
    out.mkdir(parents=True, exist_ok=True)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")
    return list(texts)

