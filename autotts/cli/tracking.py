"""Experiment tracking with MLflow: ``--mlflow TARGET`` on ``evaluate``, ``compare``,
``collab eval`` and ``discover`` logs one MLflow run per command, after its own files are
written (a tracker that fails never costs a result):

- **parameters**: what ran (controllers and settings, environments, seeds; a discovery run's
  strategy and search settings) and the provenance (``run.json``: version, git revision);
- **metrics**: every row's accuracy, standard error, 95 % interval and mean tokens; for a
  discovery run each round's accuracy and tokens and the Pareto front's hypervolume by round
  (as steps), each judged point, and the verdict's numbers (paired margin vs CMC with its
  interval, the share of SC@64's tokens, 0/1 flags);
- **artifacts**: the output folder (tables, plots, traces) or the run directory's report,
  judgements and winning controller.

``TARGET`` is a tracking URI (``http://host:5000``, ``sqlite:///path/mlflow.db``, …) or a
local directory, which becomes a SQLite store ``DIR/mlflow.db`` with artifacts in
``DIR/artifacts`` (MLflow's own file store is in maintenance mode and refuses new runs).
Needs the ``tracking`` extra: ``pip install 'autotts[tracking]'``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Iterable
from pathlib import Path

from ..errors import BadInput

BATCH = 500  # metrics per call (MLflow takes at most 1000)


def resolve(target: str) -> tuple[str, str | None]:
    """``(tracking URI, artifact location for a new experiment or None)`` of a target."""
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", target) or target.startswith("databricks"):
        return target, None
    folder = Path(target).expanduser().resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def require(target: str | None) -> None:
    """Refuse ``--mlflow`` before anything runs when MLflow is not installed or the target
    is no URI and no usable directory."""
    if target is None:
        return
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise BadInput(
            "--mlflow needs MLflow's client: pip install 'autotts[tracking]' (or mlflow-skinny)"
        ) from None
    uri, _ = resolve(target)
    if uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        while not folder.exists():  # the nearest part of the path that exists
            folder = folder.parent
        if not folder.is_dir():
            raise BadInput(f"--mlflow {target}: {folder} is a file; give a directory or a URI")


def metric_key(*parts: str) -> str:
    """A metric name MLflow accepts (letters, digits, ``_ - . / :`` and spaces)."""
    text = "/".join(p.replace("β", "beta").replace("=", "_") for p in parts if p)
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", text)


def _client(target: str, experiment: str):
    import mlflow

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    uri, artifacts = resolve(target)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=artifacts)
    )
    return client, experiment_id


def log_run(
    target: str,
    experiment: str,
    run_name: str,
    params: dict,
    metrics: Iterable[tuple[str, float, int]],
    artifacts: Iterable[Path] = (),
    tags: dict | None = None,
) -> str:
    """Log one finished MLflow run; return its id. ``metrics``: ``(key, value, step)``;
    ``artifacts``: files and folders (folders keep their name). Non-finite values are left
    out (MLflow stores no NaN intervals usefully)."""
    from mlflow.entities import Metric, Param

    client, experiment_id = _client(target, experiment)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags or {})
    run_id = run.info.run_id
    status = "FAILED"
    try:
        now = int(time.time() * 1000)
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if v is not None]
        for i in range(0, len(items), 100):
            client.log_batch(run_id, params=items[i : i + 100])
        points = [
            Metric(key, float(value), now, step)
            for key, value, step in metrics
            if value is not None and math.isfinite(float(value))
        ]
        for i in range(0, len(points), BATCH):
            client.log_batch(run_id, metrics=points[i : i + BATCH])
        for path in artifacts:
            path = Path(path)
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.exists():
                client.log_artifact(run_id, str(path))
        client.set_tag(run_id, "autotts.logged", "complete")
        status = "FINISHED"
    finally:
        client.set_terminated(run_id, status=status)
    return run_id


def _estimate_metrics(prefix: tuple[str, ...], estimate) -> list:
    if estimate is None:
        return []
    return [
        (metric_key(*prefix, "se"), estimate.se, 0),
        (metric_key(*prefix, "low"), estimate.low, 0),
        (metric_key(*prefix, "high"), estimate.high, 0),
    ]


def log_evaluation(target: str, report, out_dir: Path, experiment: str = "autotts") -> str:
    """Log an evaluation (``autotts evaluate``/``compare``, or ``report.save(dir)``): one
    metric group per row, the output folder as artifacts."""
    metrics = []
    for row in report.rows:
        key = (row.controller, row.setting, row.env_id)
        metrics.append((metric_key(*key, "accuracy"), row.accuracy, 0))
        metrics += _estimate_metrics((*key, "accuracy"), row.accuracy_estimate)
        metrics.append((metric_key(*key, "tokens"), row.tokens, 0))
        metrics.append((metric_key(*key, "errors"), row.errors, 0))
    params = {
        "configurations": ", ".join(
            dict.fromkeys(f"{r.controller} {r.setting}" for r in report.rows)
        ),
        "environments": ", ".join(dict.fromkeys(r.env_id for r in report.rows)),
        "seeds": report.seeds,
        **_provenance(out_dir),
    }
    artifacts = sorted(p for p in Path(out_dir).iterdir() if not p.name.startswith("."))
    return log_run(target, experiment, Path(out_dir).name, params, metrics, artifacts)


def log_graph_evaluation(target: str, rows: list[dict], out_dir: Path) -> str:
    """Log an ``autotts collab eval`` (rows of :func:`autotts.collab.eval_tables.graph_row`)."""
    names = {"accuracy": "accuracy", "accuracy_se": "accuracy/se", "accuracy_low": "accuracy/low",
             "accuracy_high": "accuracy/high", "tokens": "tokens", "cost": "cost"}  # fmt: skip
    metrics = []
    for row in rows:
        key = (f"beta={row['beta']:g}", row["env"])
        metrics += [(metric_key(*key, name), row[field], 0) for field, name in names.items()]
    params = {"graph": rows[0]["graph"], "environment": rows[0]["env"], **_provenance(out_dir)}
    artifacts = sorted(p for p in Path(out_dir).iterdir() if not p.name.startswith("."))
    return log_run(target, "autotts-collab", Path(out_dir).name, params, metrics, artifacts)


def log_discovery(target: str, run, experiment: str = "autotts-discovery") -> str:
    """Log a discovery run directory (:class:`~autotts.discovery.runs.DiscoveryRun`): its
    settings, round-by-round trajectory, judgements and verdicts, and its report (rendered
    here when missing), judgements and winning controller as artifacts."""
    from ..discovery.run_report import front_over_rounds, round_points

    config = run.config
    search = config.get("search", {})
    params = {
        "strategy": config.get("strategy"),
        "name": config.get("name"),
        **{k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in search.items()},
    }
    if config.get("llm"):
        params["llm_model"] = config["llm"].get("model")
    rounds = run.rounds()
    metrics = []
    for step, record in enumerate(rounds, 1):
        points = round_points(record)
        if points:
            tokens, accuracy = max(points, key=lambda p: p[1])
            metrics += [("round/accuracy", accuracy, step), ("round/tokens", tokens, step)]
    for step, volume in enumerate(front_over_rounds(rounds)["hypervolume"], 1):
        metrics.append(("round/hypervolume", volume, step))
    for stage in ("search", "heldout"):
        path = run.path / f"{stage}.json"
        if path.exists():
            metrics += _judgement_metrics(stage, json.loads(path.read_text()))
    if not (run.path / "report.md").exists() and rounds:
        run.report()
    wanted = ("report.md", "report.html", "trajectory.png", "curves.png", "search.json",
              "heldout.json", "config.json", "family")  # fmt: skip
    artifacts = [run.path / name for name in wanted if (run.path / name).exists()]
    tags = {"autotts.run_dir": str(run.path)}
    return log_run(target, experiment, run.path.name, params, metrics, artifacts, tags)


def _judgement_metrics(stage: str, data: dict) -> list:
    out = []
    name = data.get("name", "discovered")
    for label, curve in ((name, data.get("winner", [])), ("cmc", data.get("cmc", []))):
        for point in curve:
            key = (stage, label, point.get("setting", ""))
            out += [
                (metric_key(*key, "accuracy"), point["accuracy"], 0),
                (metric_key(*key, "tokens"), point["tokens"], 0),
            ]
            low_high = point.get("accuracy_interval") or (None, None)
            out += [(metric_key(*key, "accuracy", "low"), low_high[0], 0),
                    (metric_key(*key, "accuracy", "high"), low_high[1], 0)]  # fmt: skip
    sc = data.get("sc64")
    if sc:
        out += [(metric_key(stage, "sc64", "accuracy"), sc["accuracy"], 0),
                (metric_key(stage, "sc64", "tokens"), sc["tokens"], 0)]  # fmt: skip
    verdict = data.get("verdict") or {}
    margin = verdict.get("margin_vs_cmc") or (verdict.get("mean_margin_vs_cmc"), None, None)
    for suffix, value in zip(("", "/low", "/high"), margin, strict=False):
        out.append((f"{stage}/verdict/margin_vs_cmc{suffix}", value, 0))
    out.append((f"{stage}/verdict/token_share_of_sc64", verdict.get("token_share_of_sc64"), 0))
    for flag in ("matches_sc64", "beats_cmc", "matches_sc64_within_35pct", "ahead_of_cmc"):
        if flag in verdict:
            out.append((f"{stage}/verdict/{flag}", float(bool(verdict[flag])), 0))
    return out


def _provenance(out_dir: Path) -> dict:
    path = Path(out_dir) / "run.json"
    if not path.exists():
        return {}
    record = json.loads(path.read_text())
    return {
        "autotts_version": record.get("autotts_version"),
        "git_revision": record.get("git_revision"),
        "command": " ".join(record.get("command") or []),
    }


__all__ = [
    "log_discovery",
    "log_evaluation",
    "log_graph_evaluation",
    "log_run",
    "require",
    "resolve",
]
