"""What every proposer of controller programs shares, whoever writes them (a chat model,
:mod:`.agent`; a coding agent, :mod:`.coding_agent`): the round's prompt (history, the
objective, the quick tests' budget, the environments' facts), the quick tests, the sandboxed
β-sweep of a candidate, its record in the run directory and the lesson drawn from it.

A subclass implements :meth:`Proposer.run_round`: given the round's number, it obtains a
controller source and calls :meth:`finish_round` with it (or with the reason there is none).
"""

from __future__ import annotations

import gzip
import json
import time

from ..results.run_directory import RunDirectory
from ..sandbox import SandboxLimits
from .candidates import CandidateResult, evaluate_candidate
from .facts import environment_facts
from .objective import CMCReference, describe, ranking_key, score_against_cmc
from .quicktest import Baselines, budget_text, parse_request, report_text
from .replies import prompt, select_failure_traces

MAX_TESTS = 2  # quick tests per round
TRACE_BUDGET_CHARS = 4000


class Proposer:
    """The shared half of a proposer, over a run directory and the search environments
    (``envs``: ``{env_id: ReplayEnvironment}``). Candidates run in the OS sandbox;
    ``isolate=False`` runs them in plain processes."""

    def __init__(self, run: RunDirectory, settings, envs: dict, isolate: bool = True):
        self.run, self.settings, self.envs, self.isolate = run, settings, envs, isolate
        self.limits = SandboxLimits()
        self.baselines = Baselines(settings.env_dir)

    def run_round(self, number: int) -> dict:
        """Play round ``number`` (0-based) to its record; returns its outcome."""
        raise NotImplementedError

    @property
    def reference(self) -> CMCReference:
        """CMC on the search environments with the rounds' seeds (the objective's baseline)."""
        return self.baselines.cmc(self.settings.search_envs, self.settings.seeds)

    @property
    def questions(self) -> int:
        return min(len(env) for env in self.envs.values())

    # --- the round's texts -------------------------------------------------------------

    def system_text(self) -> str:
        return prompt("proposer_system.md")

    def round_text(self, number: int) -> str:
        """The start of round ``number``: everything the proposer is told."""
        return prompt(
            "proposer_round.md",
            round=number + 1,
            rounds=self.settings.trials,
            candidate=f"{number:04d}",
            envs=", ".join(self.settings.search_envs),
            facts=environment_facts(self.envs),
            baselines=self._baselines_text(),
            objective=self._objective_text(),
            tests=budget_text(list(self.envs), self.questions, MAX_TESTS),
            best=self._candidates_text(best=True),
            recent=self._candidates_text(best=False),
            traces=self._traces_text(),
            lessons=self._lessons_text(),
        )

    def quick_test(self, source: str, request: str) -> str:
        """A quick sandboxed test of ``source`` as ``request`` (a reply or ``TEST:`` line)
        asks: the report of :func:`.quicktest.report_text`."""
        asked = parse_request(request, list(self.envs), self.questions)
        envs = {e: self.envs[e] for e in asked.envs}
        result = evaluate_candidate(
            source,
            envs,
            asked.betas,
            asked.seeds,
            workers=2,
            trace_seeds=0,
            limits=self.limits,
            isolate=self.isolate,
        )
        return report_text(asked, result, *self.baselines.for_test(asked.envs, asked.seeds))

    # --- evaluate, record, reflect -----------------------------------------------------

    def evaluate(self, source: str) -> tuple[dict, str]:
        """The candidate's sandboxed β-sweep on the search environments, scored by the
        objective: ``(result, status)``."""
        result = evaluate_candidate(
            source,
            self.envs,
            [round(0.1 * i, 1) for i in range(11)],
            self.settings.seeds,
            workers=self.settings.workers or 2,
            trace_seeds=1,
            limits=self.limits,
            isolate=self.isolate,
        )
        outcome = _result_dict(result)
        if result.ok:
            outcome["objective"] = score_against_cmc(
                result.curve, result.tables, self.reference, self._windows()
            )
        return outcome, "ok" if result.ok else "rejected"

    def finish_round(self, number: int, source: str | None, error: str | None = None, **extra):
        """Evaluate ``source`` (when there is one), record the round and draw its lesson;
        ``extra`` goes into the round's record. Returns ``{"status", "lesson"}``."""
        result, status = self.evaluate(source) if source is not None else (None, "failed")
        self.record(number, source, result, status, error, extra)
        return {"status": status, "lesson": self.reflect(number)}

    def record(self, number, source, result, status, error, extra=None) -> None:
        reason = (result or {}).get("reason") or error or ""
        traces = (result or {}).pop("traces", []) if result else []
        self.run.write_candidate(number, source=source, result=result, traces=traces)
        best = (
            max(result["curve"], key=lambda p: p["accuracy"])
            if result and result["curve"]
            else None
        )
        scored = (result or {}).get("objective") if status == "ok" else None
        self.run.append(
            {
                "event": "round",
                "stage": "llm",
                "round": number,
                "candidate": f"{number:04d}",
                "status": status,
                "reason": reason,
                "score": scored and scored["margin"],
                "score_interval": scored and scored["interval"],
                "objective": scored and describe(scored),
                "accuracy": best["accuracy"] if best and status == "ok" else None,
                "tokens": best["tokens"] if best and status == "ok" else None,
                "curve": [[p["beta"], p["accuracy"], p["tokens"]] for p in result["curve"]]
                if result
                else [],
                **(extra or {}),
                "time": time.time(),
            }
        )

    def reflect(self, number: int) -> str:
        rounds = self.run.rounds()  # rounds running in parallel may have finished after mine
        mine = next((r for r in rounds if r.get("round") == number), {})
        others = [r for r in rounds if r is not mine and r.get("score") is not None]
        name = f"round {number + 1} (candidate {number:04d})"
        if mine.get("status") != "ok":
            lesson = f"{name}: {mine.get('status', 'failed')}: {mine.get('reason', '')[:300]}"
        else:
            prior = max(map(ranking_key, others)) if others else None
            better = mine.get("score") is not None and (prior is None or ranking_key(mine) > prior)
            verdict = "new best" if better else "not better"
            lesson = f"{name}: {mine['objective']} ({verdict}); " + ", ".join(
                f"β={b:g}: {a:.1f}%@{t / 1000:.0f}k" for b, a, t in mine["curve"][::5]
            )
        self.run.append({"event": "lesson", "round": number, "text": lesson})
        return lesson

    # --- history -----------------------------------------------------------------------

    def _scored(self) -> list[dict]:
        return [
            r for r in self.run.rounds() if r.get("stage") == "llm" and r.get("score") is not None
        ]

    def _best_source(self) -> str | None:
        """Source of the best accepted candidate so far (the base of edit replies)."""
        scored = self._scored()
        if not scored:
            return None
        best = max(scored, key=ranking_key)
        return self.run.candidate_source(int(best["candidate"]))

    def _candidates_text(self, best: bool) -> str:
        rounds = [r for r in self.run.rounds() if r.get("stage") == "llm"]
        chosen = sorted(self._scored(), key=ranking_key, reverse=True)[:2] if best else rounds[-3:]
        if not chosen:
            return "(none yet)"
        parts = []
        for r in chosen:
            head = f"## candidate {r['candidate']} ({r['status']})"
            if r["status"] == "ok":
                curve = "; ".join(f"β={b:g}: {a:.2f}% @ {t / 1000:.1f}k" for b, a, t in r["curve"])
                head += f"\nobjective: {r['objective']}\ncurve: {curve}"
            else:
                head += f"\nreason: {r.get('reason', '')[:400]}"
            source = self.run.candidate_source(int(r["candidate"])) if best else None
            if source is not None:
                head += "\n```python\n" + source[:6000] + "\n```"
            parts.append(head)
        return "\n\n".join(parts)

    def _baselines(self) -> dict:
        """CMC's curve and SC@64 on the search environments with the final seeds (the
        run's ``baselines.json``, computed once)."""
        cached = self.run.path / "baselines.json"
        if not cached.exists():
            from .stages import curves_with_baselines

            data = curves_with_baselines(None, "", self.settings.search_envs, self.settings)
            self.run.write_json("baselines.json", data)
        return json.loads(cached.read_text())

    def _baselines_text(self) -> str:
        data = self._baselines()
        cmc = "; ".join(
            f"β={p['beta']:g}: {p['accuracy']:.2f}% @ {p['tokens'] / 1000:.1f}k"
            for p in data["cmc"]
        )
        sc = data["sc64"]
        return f"- SC@64: {sc['accuracy']:.2f}% @ {sc['tokens'] / 1000:.1f}k\n- CMC: {cmc}"

    def _windows(self) -> list[tuple[float, float]]:
        """The run's budget windows (``--target``) as ``(share, tokens)`` caps: shares of
        SC@64's mean tokens on the search environments."""
        if not self.settings.targets:
            return []
        sc_tokens = self._baselines()["sc64"]["tokens"]
        return [(share, share * sc_tokens) for share in sorted(self.settings.targets)]

    def _objective_text(self) -> str:
        low, high = self.reference.token_range
        scored = self._scored()
        best = max(scored, key=ranking_key) if scored else None
        now = f"candidate {best['candidate']}: {best['objective']}" if best else "(none yet)"
        windows = self._windows()
        caps = ", ".join(f"{100 * share:.0f}% ({tokens / 1000:.1f}k)" for share, tokens in windows)
        return prompt(
            "objective.md",
            windows=(
                f"Budget windows ({caps} of SC@64's mean tokens): for each, your most accurate "
                "setting within it against CMC's, paired, is reported beside the margin (the "
                "margin alone ranks)."
                if windows
                else "No budget windows in this run."
            ),
            seeds=self.settings.seeds,
            low=f"{low / 1000:.1f}k",
            high=f"{high / 1000:.1f}k",
            best=now,
        )

    def _traces_text(self) -> str:
        scored = self._scored()
        if not scored:
            return "(none yet)"
        best = max(scored, key=ranking_key)
        path = self.run.candidate_dir(int(best["candidate"])) / "traces.jsonl.gz"
        if not path.exists():
            return "(no traces recorded)"
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            traces = [json.loads(line) for line in handle if line.strip()]
        return select_failure_traces(traces, TRACE_BUDGET_CHARS)

    def _lessons_text(self) -> str:
        lessons = [r["text"] for r in self.run.records() if r.get("event") == "lesson"]
        return "\n".join(f"- {text}" for text in lessons[-8:]) or "(none yet)"


def _result_dict(result: CandidateResult) -> dict:
    return {
        "ok": result.ok,
        "reason": result.reason,
        "curve": result.curve,
        "seconds": result.seconds,
        "traces": result.traces,
    }


__all__ = ["MAX_TESTS", "Proposer"]
