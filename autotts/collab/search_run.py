"""``autotts collab search``: search, final evaluation, export — one resumable run directory.

Stages (each recorded in ``RUN/history.jsonl`` when done, skipped on ``--resume``):

1. **search** on the search dataset at ``seeds`` seeds (``evaluations.jsonl``);
2. **final**: the search's Pareto set within budget (at most ``final_graphs``, chosen on the
   search dataset only), the fixed hand-designed graphs of ``agents/graphs/``, and every
   single-model SC/ASC/CMC sweep, all at ``final_seeds`` on the search *and* held-out
   datasets (``final.json``);
3. **export**: the best graph within budget on the search dataset as ``best_graph.yaml`` and
   as a controller file ``best_graph.py``.

``autotts report RUN`` renders the frontier report from ``final.json``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..results.run_directory import RunDirectory, RunError
from ..utils.project_files import project_dir
from .compile import export_graph
from .evaluate import CrossSpec, environment
from .frontier import (
    graph_points,
    on_envelope,
    pareto,
    public,
    single_model_points,
    with_gains,
)
from .graph import CollabGraph
from .graph_strategies import collab_strategy

FIXED_GRAPHS = project_dir("agents") / "graphs"
FIXED_BETAS = (0.25, 0.5, 0.75, 1.0)


@dataclass
class CollabSettings:
    strategy: str = "optuna"  # optuna (multi-objective TPE) | agent (Agent-REINFORCE)
    objective: str = "pareto"  # optuna: pareto (accuracy, cost) | budget (accuracy within budget)
    dataset: str = "aime24"
    heldout: str = "aime25"
    models: list[str] | None = None
    env_dir: str | None = None
    cost_table: str | None = None  # JSON of a CostModel
    budget: float = 4e15
    trials: int = 60
    seeds: int = 20
    final_seeds: int = 100
    final_graphs: int = 10
    seed: int = 0
    batch: int = 4
    lr: float = 0.1
    workers: int | None = None
    llm: dict | None = field(default=None)

    def __post_init__(self) -> None:
        if self.strategy not in ("optuna", "agent"):
            raise RunError(f"unknown collaboration strategy {self.strategy!r}; use optuna or agent")
        if self.objective not in ("pareto", "budget"):
            raise RunError(f"unknown objective {self.objective!r}; use pareto or budget")
        if self.budget <= 0:
            raise RunError(f"the budget must be positive, got {self.budget:g}")

    @classmethod
    def recorded(cls, data: dict) -> CollabSettings:
        """The settings a run recorded (runs before the rename call the strategy "method")."""
        data = dict(data)
        if "method" in data:
            data["strategy"] = data.pop("method")
        return cls(**data)

    def spec(self, dataset: str | None = None) -> CrossSpec:
        models = tuple(self.models) if self.models else None
        return CrossSpec(dataset or self.dataset, models, self.env_dir, self.cost_table)


def fixed_graphs() -> list[CollabGraph]:
    """The hand-designed graphs shipped in ``agents/graphs/`` (fixed cascades and votes)."""
    return [CollabGraph.load(p) for p in sorted(FIXED_GRAPHS.glob("*.yaml"))]


def run_collab(run: RunDirectory, settings: CollabSettings, console=None, api_key=None) -> dict:
    say = console.print if console else (lambda *a, **k: None)
    if not run.stage_done("search"):
        strategy = collab_strategy(settings, api_key)
        records = strategy.search(run, settings, log=lambda line: say(line, highlight=False))
        run.finish_stage("search", evaluations=[r["label"] for r in records])
    if not run.stage_done("final"):
        say("final evaluation (search and held-out datasets)…")
        run.write_json("final.json", public(final_evaluation(run, settings)))
        run.finish_stage("final")
    final = run.read_json("final.json")
    if not run.stage_done("export"):
        best = final.get("best")
        if best is not None:
            graph = CollabGraph.model_validate(best["graph"])
            graph.dump(run.path / "best_graph.yaml")
            header = (
                f"search: {settings.strategy} on {settings.dataset}, budget {settings.budget:.3g}"
                f"\n{settings.dataset}: {best['accuracy']:.2f}% at {best['cost']:.3g}"
            )
            export_graph(graph, run.path / "best_graph.py", header)
        run.finish_stage("export")
    return final


def searched_graphs(run: RunDirectory, budget: float, limit: int) -> list[CollabGraph]:
    """The Pareto set of the search's evaluations within budget (at most ``limit``, spread
    evenly over the front, its most accurate point always included)."""
    scored = [r for r in run.records("evaluations.jsonl") if r.get("graph") and r["cost"] <= budget]
    front = pareto(scored)
    if len(front) > limit:
        step = (len(front) - 1) / (limit - 1) if limit > 1 else 0
        picks = sorted({round(i * step) for i in range(limit)} | {len(front) - 1})
        front = [front[i] for i in picks]
    return [CollabGraph.model_validate(r["graph"]) for r in front]


def final_evaluation(run: RunDirectory, settings: CollabSettings) -> dict:
    graphs = searched_graphs(run, settings.budget, settings.final_graphs)
    fixed = fixed_graphs()
    unit = environment(settings.spec()).unit
    out: dict = {"settings": asdict(settings), "unit": unit, "datasets": {}}
    for role, dataset in (("search", settings.dataset), ("heldout", settings.heldout)):
        spec = settings.spec(dataset)
        single = single_model_points(spec, settings.final_seeds, settings.workers)
        searched = graph_points(graphs, spec, settings.final_seeds, workers=settings.workers)
        hand = graph_points(fixed, spec, settings.final_seeds, FIXED_BETAS, settings.workers)
        out["datasets"][role] = {
            "dataset": dataset,
            "single": single,
            "searched": with_gains(searched, single),
            "fixed": with_gains(hand, single),
        }
    # Held out, also against the single-model configurations chosen on the search set (the
    # held-out envelope itself picks the best of ~100 configurations with hindsight).
    chosen = {p["label"] for p in on_envelope(out["datasets"]["search"]["single"])}
    heldout = out["datasets"]["heldout"]
    transferred = [p for p in heldout["single"] if p["label"] in chosen]
    for key in ("searched", "fixed"):
        heldout[key] = with_gains(heldout[key], transferred, "_chosen_on_search")
    search = out["datasets"]["search"]["searched"]
    within = [p for p in search if p["cost"] <= settings.budget]
    best = max(within, key=lambda p: p["accuracy"], default=None)
    if best is not None:
        graph = next(g for g in graphs if g.name == best["graph"])
        out["best"] = dict(best, graph=graph.model_dump(mode="json"))
    out["graphs"] = {g.name: g.model_dump(mode="json") for g in graphs}
    return out


def best_gain(points: list[dict], key: str = "") -> dict | None:
    """The point with the largest ``gain{key}`` over a single-model envelope."""
    finite = [p for p in points if math.isfinite(p.get(f"gain{key}", -math.inf))]
    return max(finite, key=lambda p: p[f"gain{key}"], default=None)


def run_path(out: Path | None) -> Path:
    from datetime import datetime

    from ..results.run_directory import RUNS_DIR

    return out or Path(RUNS_DIR) / f"collab-{datetime.now():%Y%m%d-%H%M%S}"


__all__ = ["CollabSettings", "best_gain", "final_evaluation", "run_collab", "searched_graphs"]
