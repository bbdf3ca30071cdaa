"""Search strategies: how a discovery run proposes what to evaluate next.

A strategy is a small object (like an Optuna sampler) handed to :func:`autotts.discover`;
the run records its name and options in ``config.json`` so a resumed run rebuilds the same
one. Three ship:

- :class:`OptunaStrategy`: a multi-objective Optuna study (TPE or NSGA-II) over the
  composable controller space, compressed into a β-family;
- :class:`TuneStrategy`: tunes CMC's β-schedule knots directly (one objective per β);
- :class:`LLMStrategy`: an LLM (any OpenAI-compatible endpoint) writes controller
  programs, which run in the operating-system sandbox.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import BadInput

if TYPE_CHECKING:
    from ..results.run_directory import RunDirectory
    from .optuna_search import SearchSettings


class Strategy(ABC):
    """The contract of a discovery strategy.

    - ``name``: the id recorded as ``config.json["strategy"]``;
    - ``options()``: its JSON-ready options, recorded next to the name (never secrets such
      as API keys); ``cls(**options)`` must rebuild an equal strategy;
    - ``runs_untrusted_code``: whether candidates are programs someone else wrote (then the
      run needs operating-system isolation, see :func:`autotts.sandbox.require_isolation`);
    - ``search(run, settings, name, progress, log)``: run — or resume, from what ``run``
      recorded — the search stage, recording every round in ``run`` before counting it.
    """

    name: ClassVar[str]
    runs_untrusted_code: ClassVar[bool] = False

    def options(self) -> dict[str, Any]:
        return asdict(self) if hasattr(self, "__dataclass_fields__") else {}

    @abstractmethod
    def search(
        self,
        run: RunDirectory,
        settings: SearchSettings,
        name: str,
        progress: Callable | None = None,
        log: Callable[[str], None] | None = None,
    ) -> dict:
        """Run or resume the search; return the held-out judgement (``{}`` without one)."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"


@dataclass(repr=False)
class OptunaStrategy(Strategy):
    """Optuna over the composable controller space: ``sampler`` ``"tpe"`` or ``"nsga2"``;
    the study lives in ``storage`` (an SQLAlchemy URL; default ``RUN/optuna.db``) under
    ``study_name``, so several processes can share it."""

    sampler: str = "tpe"
    sampler_seed: int = 0
    storage: str | None = None
    study_name: str = "structural"
    name: ClassVar[str] = "optuna"

    def __post_init__(self) -> None:
        from .optuna_search import SAMPLERS

        if self.sampler not in SAMPLERS:
            raise BadInput(f"unknown Optuna sampler {self.sampler!r}; use {' or '.join(SAMPLERS)}")

    def search(self, run, settings, name, progress=None, log=None) -> dict:
        from .stages import run_optuna_discovery

        return run_optuna_discovery(run, settings, name, progress, log)


@dataclass(repr=False)
class TuneStrategy(Strategy):
    """Tune CMC's β-schedule (its knots) with Optuna, one study per β."""

    name: ClassVar[str] = "tune"

    def search(self, run, settings, name, progress=None, log=None) -> dict:
        from .stages import run_optuna_discovery

        return run_optuna_discovery(run, settings, name, progress, log)


@dataclass(repr=False)
class LLMStrategy(Strategy):
    """An LLM writes controller programs round by round (LangGraph over an
    OpenAI-compatible endpoint at ``base_url``). ``api_key`` defaults to
    ``$AUTOTTS_LLM_API_KEY`` / ``$OPENAI_API_KEY`` and is never recorded. Candidates run in
    the OS sandbox; ``isolate=False`` runs them in plain processes (only where isolation is
    unavailable and the model and its endpoint are trusted)."""

    model: str
    base_url: str | None = None
    temperature: float = 0.7
    price_in: float | None = None
    price_out: float | None = None
    max_tokens: int = 16_384  # per reply (a reasoning model's thinking included)
    timeout_s: float = 600.0  # per request; the client retries with exponential backoff
    max_retries: int = 4
    max_usd: float | None = None  # budget: the run stops cleanly once spent (resumable)
    max_llm_tokens: int | None = None
    parallel: int = 1  # proposals per round of the loop, requested and evaluated at once
    structured: bool = True  # JSON replies (response_format) where the endpoint has them
    api_key: str | None = field(default=None, compare=False)
    isolate: bool = field(default=True, compare=False)
    name: ClassVar[str] = "llm"
    runs_untrusted_code: ClassVar[bool] = True

    def options(self) -> dict[str, Any]:
        options = asdict(self)
        del options["api_key"], options["isolate"]
        return options

    def search(self, run, settings, name, progress=None, log=None) -> dict:
        from .llm_loop import run_llm_discovery

        api_key = (
            self.api_key
            or os.environ.get("AUTOTTS_LLM_API_KEY")
            or os.environ.get("OPENAI_API_KEY")
        )

        return run_llm_discovery(
            run, settings, run.config, api_key, console=_LogPrinter(log), isolate=self.isolate
        )


@dataclass
class AgentStrategy(Strategy):
    """A coding agent writes the controller programs: ``command`` (any program: Claude Code,
    Codex CLI, aider, a script) runs once per round in a workspace of its own with
    ``timeout_s`` to leave a ``controller.py`` there (:mod:`.coding_agent`). ``max_usd`` /
    ``max_llm_tokens`` stop the run once the usage it reports reaches them. Its controllers
    run in the OS sandbox (``isolate=False``: plain processes)."""

    command: str
    timeout_s: float = 1800.0
    max_usd: float | None = None
    max_llm_tokens: int | None = None
    isolate: bool = field(default=True, compare=False)
    name: ClassVar[str] = "agent"
    runs_untrusted_code: ClassVar[bool] = True

    def options(self) -> dict[str, Any]:
        options = asdict(self)
        del options["isolate"]
        return options

    def search(self, run, settings, name, progress=None, log=None) -> dict:
        from .coding_agent import AgentProposer
        from .llm_loop import run_rounds, search_envs

        proposer = AgentProposer(
            run, settings, self.command, self.timeout_s, search_envs(settings), self.isolate
        )

        return run_rounds(
            run, settings, run.config, proposer, self.options(), 1, _LogPrinter(log), self.isolate
        )


class _LogPrinter:
    """A console for the rounds' loop that hands each line to ``log`` (or drops it)."""

    def __init__(self, log: Callable[[str], None] | None):
        self.log = log

    def print(self, text, **_) -> None:
        if self.log:
            self.log(text)


# strategies whose runs are rounds of proposed controller programs, their options kept in
# the run's config under the strategy's name
ROUND_STRATEGIES = ("llm", "agent")

STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (OptunaStrategy, TuneStrategy, LLMStrategy, AgentStrategy)
}


def strategy_from(value: str | Strategy, **options) -> Strategy:
    """A strategy object from itself or its name (``"optuna"``, ``"tune"``, ``"llm"``)."""
    if isinstance(value, Strategy):
        return value
    cls = STRATEGIES.get(str(value))
    if cls is None:
        raise BadInput(f"unknown strategy {value!r}; use one of {', '.join(STRATEGIES)}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise BadInput(f"strategy {value!r}: {exc}") from None


def strategy_of_run(config: dict, **secrets) -> Strategy:
    """The strategy a run's ``config.json`` records (runs recorded before strategy options
    existed keep them in ``search`` and ``llm``)."""
    name = config.get("strategy", "optuna")
    options = dict(config.get("strategy_options") or {})
    if not options and name == "optuna":
        search = config.get("search", {})
        options = {k: search[k] for k in ("sampler", "sampler_seed", "storage") if k in search}
        if "study_name" in search:
            options["study_name"] = search["study_name"]
    if not options and name in ROUND_STRATEGIES:
        options = dict(config.get(name) or {})
    return strategy_from(name, **options, **secrets)


__all__ = [
    "ROUND_STRATEGIES",
    "STRATEGIES",
    "AgentStrategy",
    "LLMStrategy",
    "OptunaStrategy",
    "Strategy",
    "TuneStrategy",
    "strategy_from",
    "strategy_of_run",
]
