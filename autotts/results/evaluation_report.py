"""Evaluation results: :class:`EvaluationReport` (rows with their uncertainty, per-question
and per-episode detail, traces, paired comparisons); :mod:`autotts.results.writers` writes them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..loading.run_configs import RunConfig
from ..utils.atomic_files import atomic_write_text
from .stats import Estimate, Verdict, paired_difference, superiority


@dataclass
class UnitResult:
    """Per-question aggregates of one (config, environment, question block) unit."""

    config: RunConfig
    env_id: str
    questions: list[int]
    # per question slot, per seed (in seed order): 1/0 correct, and tokens
    seed_correct: list[list[int]] = field(default_factory=list)
    seed_tokens: list[list[int]] = field(default_factory=list)
    episodes: int = 0
    errors: int = 0
    first_error: str | None = None
    load_error: str | None = None
    traces: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @classmethod
    def empty(cls, config: RunConfig, env_id: str, questions, seeds: int) -> UnitResult:
        n = len(questions)
        return cls(
            config,
            env_id,
            list(questions),
            [[0] * seeds for _ in range(n)],
            [[0] * seeds for _ in range(n)],
        )

    def record(self, slot: int, seed: int, correct: bool, tokens: int) -> None:
        """Count one finished episode of question ``questions[slot]``."""
        self.seed_correct[slot][seed] = int(correct)
        self.seed_tokens[slot][seed] = tokens

    @property
    def correct(self) -> list[int]:
        """Per question: the number of correct seeds."""
        return [sum(seeds) for seeds in self.seed_correct]

    @property
    def tokens(self) -> list[int]:
        """Per question: tokens summed over seeds."""
        return [sum(seeds) for seeds in self.seed_tokens]


@dataclass
class Row:
    """One line of the results table."""

    controller: str
    setting: str
    env_id: str
    accuracy: float  # percent, averaged over questions and seeds
    tokens: float  # mean tokens per question
    episodes: int
    errors: int
    status: str
    seconds: float
    config: RunConfig
    accuracy_estimate: Estimate | None = None  # percent: mean, standard error, 95 % interval
    tokens_estimate: Estimate | None = None

    @property
    def accuracy_text(self) -> str:
        """``84.27 ± 0.52`` (accuracy and its standard error)."""
        if self.accuracy_estimate is None:
            return f"{self.accuracy:.2f}"
        return f"{self.accuracy:.2f} ± {self.accuracy_estimate.se:.2f}"

    @property
    def interval_text(self) -> str:
        """The accuracy's 95 % interval, ``[83.2, 85.3]``."""
        e = self.accuracy_estimate
        return "-" if e is None else f"[{e.low:.1f}, {e.high:.1f}]"

    def cells(self) -> list[str]:
        """The row as tables print it: controller, setting, environment, accuracy ± se, its
        interval, tokens."""
        return [
            self.controller,
            self.setting,
            self.env_id,
            self.accuracy_text,
            self.interval_text,
            self.tokens_k,
        ]

    @property
    def tokens_k(self) -> str:
        """Mean tokens in k as the paper prints them (rounded to whole tokens first)."""
        if self.tokens != self.tokens:  # NaN: nothing ran
            return "-"
        return "%.1fk" % (round(self.tokens) / 1000)


@dataclass
class EvaluationReport:
    """All results of one evaluation: ``rows`` (one per configuration × environment),
    ``units`` (per-question detail and traces), the seeds and the wall time;
    ``token_ceilings``: per environment, the fixed token reference of the summaries'
    hypervolume (:mod:`autotts.results.curve_summaries`).

    In a notebook: ``report`` displays as a table; ``report.per_question()`` gives the
    per-question accuracies; ``report.to_csv(path)``, ``report.plot(path)`` and
    ``report.save(directory)`` write the same files ``autotts evaluate`` writes."""

    rows: list[Row]
    units: list[UnitResult]
    seeds: int
    seconds: float
    token_ceilings: dict[str, float] = field(default_factory=dict)

    def row(self, name: str, env_id: str, setting: str | None = None) -> Row:
        for row in self.rows:
            if row.controller == name and row.env_id == env_id and setting in (None, row.setting):
                return row
        raise KeyError(f"no result for {name} {setting or ''} on {env_id}")

    def outcomes(self, row: Row) -> tuple[list[list[int]], list[list[int]]]:
        """Per question, per seed: whether the episode was correct (1/0), and its tokens."""
        mine = [u for u in self.units if u.config == row.config and u.env_id == row.env_id]
        return (
            [seeds for u in mine for seeds in u.seed_correct],
            [seeds for u in mine for seeds in u.seed_tokens],
        )

    def compare(self, candidate: Row, baseline: Row) -> Verdict:
        """Paired comparison of two rows' accuracies on the same environment (same questions,
        same seeds): ``beats`` / ``worse`` only when the 95 % interval of the difference
        excludes zero, else ``no significant difference``."""
        if candidate.env_id != baseline.env_id:
            raise ValueError("a paired comparison needs both rows on the same environment")
        a, b = self.outcomes(candidate)[0], self.outcomes(baseline)[0]
        return superiority(
            paired_difference([100.0 * np.asarray(a, float)], [100.0 * np.asarray(b, float)])
        )

    def to_records(self) -> list[dict]:
        """The rows as JSON-ready dicts, with the estimates' standard errors and intervals."""
        records = []
        for r in self.rows:
            acc, tok = r.accuracy_estimate, r.tokens_estimate
            records.append(
                {
                    "controller": r.controller,
                    "setting": r.setting,
                    "env": r.env_id,
                    "accuracy": None if math.isnan(r.accuracy) else r.accuracy,
                    "accuracy_se": acc and acc.se,
                    "accuracy_interval": acc and [acc.low, acc.high],
                    "tokens": None if math.isnan(r.tokens) else r.tokens,
                    "tokens_interval": tok and [tok.low, tok.high],
                    "episodes": r.episodes,
                    "errors": r.errors,
                    "status": r.status,
                }
            )
        return records

    def per_question(self) -> list[dict]:
        """One dict per (configuration, environment, question): ``accuracy`` (percent of
        seeds correct) and ``mean_tokens``."""
        return [
            {
                "controller": unit.config.name,
                "setting": unit.config.setting,
                "env": unit.env_id,
                "question": q,
                "accuracy": 100 * correct / self.seeds,
                "mean_tokens": tokens / self.seeds,
            }
            for unit in self.units
            if not unit.load_error
            for q, correct, tokens in zip(unit.questions, unit.correct, unit.tokens, strict=True)
        ]

    def to_csv(self, path: str | Path | None = None) -> str:
        """The results table as CSV text, also written (atomically) to ``path`` if given."""
        text = results_csv(self)
        if path is not None:
            atomic_write_text(Path(path), text)
        return text

    def to_markdown(self, with_reference: bool = False) -> str:
        return markdown_table(self, with_reference)

    def plot(self, path: str | Path | None = None):
        """The accuracy-vs-tokens figure (a matplotlib ``Figure``); with ``path``, also saved
        there (``.png``/``.svg``/``.pdf`` by its suffix)."""
        figure = curves_figure(self)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=150)
        return figure

    def save(self, out_dir: str | Path, with_reference: bool = False) -> dict[str, Path]:
        """Write every output (tables, per-question CSV, traces, plots) into ``out_dir``."""
        return write_outputs(self, out_dir, with_reference)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


from .writers import (  # noqa: E402  (the writers, kept importable from here)
    curves_figure,
    markdown_table,
    matches_reference,
    per_question_csv,
    plot_curves,
    reference_cells,
    reference_for,
    results_csv,
    write_outputs,
)

__all__ = [
    "EvaluationReport",
    "Row",
    "UnitResult",
    "curves_figure",
    "markdown_table",
    "matches_reference",
    "per_question_csv",
    "plot_curves",
    "reference_cells",
    "reference_for",
    "results_csv",
    "write_outputs",
]
