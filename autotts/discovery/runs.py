"""The Python API of discovery: :func:`discover` starts (or continues) a run,
:func:`load_run` opens one, :class:`DiscoveryRun` reads what it produced.

    run = autotts.discover(["Qwen3-8B/aime24"], [], strategy=OptunaStrategy(), trials=20)
    run.judgement()            # the family vs SC@64 and CMC (held-out, else search set)
    run.export("mine.py")      # a plain controller file
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from ..errors import RunFailure
from ..results.run_directory import RunDirectory, RunError
from .strategies import ROUND_STRATEGIES, Strategy, strategy_from, strategy_of_run

# Who renders a collaboration run's report ("module:function", loaded on first use)
COLLAB_REPORT = "autotts.collab.frontier_report:render_collab_report"

# The default search and held-out environments: the four Qwen3 models on AIME24 / AIME25.
AIME24 = tuple(f"Qwen3-{m}/aime24" for m in ("0.6B", "1.7B", "4B", "8B"))
AIME25 = tuple(f"Qwen3-{m}/aime25" for m in ("0.6B", "1.7B", "4B", "8B"))


class DiscoveryRun:
    """A run directory (discovery or collaboration) and what it recorded."""

    def __init__(self, path: str | Path):
        self.store = RunDirectory.open(path)
        self.path = self.store.path
        self.result: dict | None = None  # what the last discover() call's search returned

    @property
    def config(self) -> dict:
        return self.store.config

    @property
    def kind(self) -> str:
        """``"discovery"`` or ``"collab"``."""
        return self.config.get("kind", "discovery")

    @property
    def strategy(self) -> Strategy | str:
        """The strategy the run records (collaboration runs: its name)."""
        if self.kind == "collab":
            return self.config.get("settings", {}).get("strategy", "optuna")
        return strategy_of_run(self.config)

    def rounds(self) -> list[dict]:
        """Every recorded round (trial or LLM candidate), in order."""
        return self.store.rounds()

    def judgement(self) -> dict | None:
        """The winner vs SC@64 and CMC: held-out when judged there, else on the search set
        (``None`` before the family stage finished)."""
        for name in ("heldout.json", "search.json", "final.json"):
            if (self.path / name).exists():
                return self.store.read_json(name)
        return None

    def export(self, out: str | Path, candidate: str | None = None) -> Path:
        """Write the winner (or a candidate, by round id) as a controller file."""
        from .export import export_controller

        return export_controller(self.path, out, candidate)

    def report(self) -> dict[str, Path]:
        """Render ``report.md`` (and ``report.html`` for discovery runs) with figures."""
        if self.kind == "collab":  # named, not imported: collab builds on discovery
            module, _, function = COLLAB_REPORT.partition(":")
            return getattr(importlib.import_module(module), function)(self.store)
        from .run_report import render_report

        return render_report(self.store)

    def __repr__(self) -> str:
        return f"DiscoveryRun({str(self.path)!r}, kind={self.kind!r})"


def load_run(path: str | Path) -> DiscoveryRun:
    """Open a discovery or collaboration run directory."""
    return DiscoveryRun(path)


def discover(
    search_envs: Sequence[str] = AIME24,
    heldout_envs: Sequence[str] = AIME25,
    *,
    strategy: str | Strategy = "optuna",
    run_dir: str | Path | None = None,
    name: str = "discovered",
    seeds: int = 20,
    final_seeds: int = 100,
    trials: int = 150,
    budget_minutes: float | None = None,
    seed: int | None = None,
    targets: Sequence[float] = (0.30, 0.55),
    window_trials: int = 150,
    race_seeds: int = 100,
    workers: int | None = None,
    env_dir: str | Path | None = None,
    progress: Callable | None = None,
    log: Callable[[str], None] | None = None,
) -> DiscoveryRun:
    """Discover a controller: search on ``search_envs``, compress, judge on
    ``heldout_envs`` next to SC@64 and CMC; every step recorded in ``run_dir`` (a fresh
    temporary directory when ``None``; an existing run there is continued with its recorded
    settings — the arguments must then be left at their defaults).

    ``strategy``: an :class:`~autotts.discovery.strategies.Strategy` or its name
    (``"optuna"``, ``"tune"``, ``"llm"`` needs options: pass ``LLMStrategy(model=…)``).
    The search stops after ``trials`` trials, so a run is deterministic given ``seed`` (the
    sampler's seed; default 0); ``budget_minutes`` adds a wall-time cap (then how many trials
    fit depends on the machine).

    ``targets`` (e.g. ``(0.30, 0.55)``): budget windows as shares of SC@64's tokens on the
    search set; the search stays below the largest, then one study per window
    (``window_trials`` trials each) maximises accuracy inside it, and the family is chosen
    for its accuracy inside them.

    ``race_seeds`` > 0: before the family is fitted, the search's contenders are scored again
    on that many fresh seeds and the family goes through those means (see
    :mod:`autotts.discovery.racing`).

    ``progress(done, total, point)`` is called after each search trial, ``log(text)`` with
    stage changes and LLM rounds. Bad input raises :class:`~autotts.BadInput`.
    """
    from ..envs.registry import resolve_ids
    from ..envs.stores import find_environment
    from ..sandbox import require_isolation
    from .optuna_search import SearchSettings
    from .stages import config_for, settings_from_config

    strategy = strategy_from(strategy)
    if run_dir is not None and (Path(run_dir) / "config.json").exists():
        run = RunDirectory.open(run_dir)
        with run.lock():
            run = RunDirectory.open(run.path)  # re-read under the lock
            recorded = run.config.get("strategy")
            secrets = _secrets(strategy, recorded)
            strategy = strategy_of_run(run.config, **secrets)
            settings = settings_from_config(run.config)
            if env_dir is not None:
                settings.env_dir = str(env_dir)
            return _search(run, strategy, settings, name, progress, log)
    if run_dir is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(tempfile.mkdtemp(prefix=f"autotts-run-{stamp}-")) / "run"
    optuna = strategy.options() if strategy.name == "optuna" else {}
    if seed is not None:
        optuna["sampler_seed"] = seed
    settings = SearchSettings(
        search_envs=resolve_ids(search_envs, env_dir),
        heldout_envs=resolve_ids(heldout_envs, env_dir),
        seeds=seeds,
        final_seeds=final_seeds,
        trials=trials,
        time_budget_s=None if budget_minutes is None else 60.0 * budget_minutes,
        targets=[float(t) for t in targets],
        window_trials=window_trials,
        race_seeds=race_seeds,
        workers=workers,
        env_dir=str(env_dir) if env_dir is not None else None,
        **optuna,
    )
    for env_id in settings.search_envs + settings.heldout_envs:
        find_environment(env_id, settings.env_dir)
    if strategy.runs_untrusted_code and getattr(strategy, "isolate", True):
        require_isolation()  # before the run directory exists
    extra = {strategy.name: strategy.options()} if strategy.name in ROUND_STRATEGIES else {}
    run = RunDirectory.create(run_dir, config_for(settings, strategy.name, name=name, **extra))
    with run.lock():
        return _search(run, strategy, settings, name, progress, log)


def _search(run, strategy, settings, name, progress, log) -> DiscoveryRun:
    from ..sandbox import require_isolation

    if strategy.runs_untrusted_code and getattr(strategy, "isolate", True):
        require_isolation()
    try:
        outcome = strategy.search(run, settings, run.config.get("name", name), progress, log)
    except RunError as exc:  # a full disk, a failing LLM endpoint, a broken study
        raise RunFailure(str(exc)) from None
    done = DiscoveryRun(run.path)
    done.result = outcome
    return done


def _secrets(strategy: Strategy, recorded: str | None) -> dict:
    """What a resumed run of the ``recorded`` strategy cannot read back from its config (the
    API key, isolation), taken from the strategy given to resume it."""
    if recorded not in ROUND_STRATEGIES:
        return {}
    secrets = {"isolate": getattr(strategy, "isolate", True)}
    if recorded == "llm":
        secrets["api_key"] = getattr(strategy, "api_key", None)
    return secrets


__all__ = ["AIME24", "AIME25", "DiscoveryRun", "discover", "load_run"]
