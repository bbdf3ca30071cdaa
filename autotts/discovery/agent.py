"""The LLM proposer: a LangGraph state machine over the ``openai`` client.

One graph invocation is one round::

    context → propose ─┬─ (ACTION: test) → quick_test → propose      (at most MAX_TESTS)
                       ├─ (no usable code, retries left) → propose    (with the error)
                       ├─ (no usable code, no retries) → record
                       └─ (code) → evaluate → record → reflect

``context`` reads the history (best and recent candidates' code and curves as numbers, and a
budgeted selection of failure traces), ``evaluate`` is the sandboxed β-sweep with the β
contract checks, ``record`` writes the candidate and its history line (the round counts from
then on), ``reflect`` turns the outcome into a lesson for later rounds. Any OpenAI-compatible
endpoint works (OpenAI, a vLLM server, a local test double); every request and reply is
logged to ``messages.jsonl`` and its token usage (and $ when priced) to the history.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from typing import TypedDict

from ..rundir import RunDirectory
from ..sandbox import SandboxLimits
from .candidates import CandidateResult, evaluate_candidate
from .llm import LLMClient
from .objective import CMCReference, cmc_reference, describe, ranking_key, score_against_cmc
from .replies import extract_code, prompt, select_failure_traces

MAX_RETRIES = 2  # after a garbage reply, ask again at most this many times per round
MAX_TESTS = 2
QUICK_BETAS = [0.0, 0.5, 1.0]
TRACE_BUDGET_CHARS = 4000


class RoundState(TypedDict, total=False):
    round: int
    messages: list[dict]
    source: str | None
    error: str | None
    retries: int
    tests: int
    wants_test: bool
    result: dict | None
    status: str
    lesson: str


class LLMProposer:
    """Runs rounds of LLM proposals against a run directory."""

    def __init__(
        self,
        run: RunDirectory,
        settings,
        llm: dict,
        api_key: str | None,
        envs: dict,
        isolate: bool = True,
    ):
        self.run, self.settings, self.llm, self.envs = run, settings, llm, envs
        self.isolate = isolate
        self.client = LLMClient(run, llm, api_key)
        self.chat = self.client.chat
        self.limits = SandboxLimits()
        self._reference: CMCReference | None = None
        self.graph = self._build_graph()

    @property
    def reference(self) -> CMCReference:
        """CMC on the search environments with the rounds' seeds (the objective's baseline)."""
        if self._reference is None:
            settings = self.settings
            self._reference = cmc_reference(settings.search_envs, settings.seeds, settings.env_dir)
        return self._reference

    # --- graph nodes -------------------------------------------------------------------

    def context(self, state: RoundState) -> RoundState:
        user = prompt(
            "proposer_round.md",
            round=state["round"] + 1,
            rounds=self.settings.trials,
            envs=", ".join(self.settings.search_envs),
            baselines=self._baselines_text(),
            objective=self._objective_text(),
            best=self._candidates_text(best=True),
            recent=self._candidates_text(best=False),
            traces=self._traces_text(),
            lessons=self._lessons_text(),
        )
        messages = [
            {"role": "system", "content": prompt("proposer_system.md")},
            {"role": "user", "content": user},
        ]
        return {"messages": messages, "retries": 0, "tests": 0, "source": None, "error": None}

    def propose(self, state: RoundState) -> RoundState:
        messages = list(state["messages"])
        try:
            reply = self.chat(state["round"], messages)
        except Exception as exc:  # unreachable endpoint, HTTP error: the round fails
            return {
                "source": None,
                "error": f"LLM request failed: {type(exc).__name__}: {exc}",
                "retries": MAX_RETRIES + 1,  # a failed request is not retried here
            }
        messages.append({"role": "assistant", "content": reply})
        source, error = extract_code(reply, self._best_source())
        if error:
            messages.append({"role": "user", "content": prompt("retry.md", error=error)})
            return {
                "messages": messages,
                "source": None,
                "error": error,
                "retries": state.get("retries", 0) + 1,
            }
        wants_test = bool(re.search(r"^\s*ACTION:\s*test\b", reply, re.MULTILINE | re.IGNORECASE))
        return {"messages": messages, "source": source, "error": None, "wants_test": wants_test}

    def route_after_propose(self, state: RoundState) -> str:
        if state.get("source") is None:
            return "propose" if state.get("retries", 0) <= MAX_RETRIES else "record"
        if state.get("wants_test") and state.get("tests", 0) < MAX_TESTS:
            return "quick_test"
        return "evaluate"

    def quick_test(self, state: RoundState) -> RoundState:
        envs = dict(list(self.envs.items())[:2])
        result = evaluate_candidate(
            state["source"],
            envs,
            QUICK_BETAS,
            3,
            workers=2,
            trace_seeds=0,
            limits=self.limits,
            isolate=self.isolate,
        )
        tests = state.get("tests", 0) + 1
        text = prompt(
            "test_result.md",
            seeds=3,
            envs=", ".join(envs),
            result=result.summary(),
            tests_left=MAX_TESTS - tests,
        )
        messages = list(state["messages"]) + [{"role": "user", "content": text}]
        return {"messages": messages, "tests": tests}

    def evaluate(self, state: RoundState) -> RoundState:
        result = evaluate_candidate(
            state["source"],
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
            outcome["objective"] = score_against_cmc(result.curve, result.tables, self.reference)
        return {"result": outcome, "status": "ok" if result.ok else "rejected"}

    def record(self, state: RoundState) -> RoundState:
        number = state["round"]
        result = state.get("result")
        status = state.get("status") or "failed"
        reason = (result or {}).get("reason") or state.get("error") or ""
        traces = (result or {}).pop("traces", []) if result else []
        self.run.write_candidate(number, source=state.get("source"), result=result, traces=traces)
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
                "time": time.time(),
            }
        )
        return {"status": status}

    def reflect(self, state: RoundState) -> RoundState:
        rounds = self.run.rounds()  # rounds running in parallel may have finished after mine
        mine = next((r for r in rounds if r.get("round") == state["round"]), {})
        others = [r for r in rounds if r is not mine and r.get("score") is not None]
        if mine.get("status") != "ok":
            lesson = f"round {mine.get('round')}: rejected: {mine.get('reason', '')[:300]}"
        else:
            prior = max(map(ranking_key, others)) if others else None
            better = mine.get("score") is not None and (prior is None or ranking_key(mine) > prior)
            verdict = "new best" if better else "not better"
            lesson = f"round {mine['round']}: {mine['objective']} ({verdict}); " + ", ".join(
                f"β={b:g}: {a:.1f}%@{t / 1000:.0f}k" for b, a, t in mine["curve"][::5]
            )
        self.run.append({"event": "lesson", "round": mine.get("round"), "text": lesson})
        return {"lesson": lesson}

    def _build_graph(self):
        from langgraph.graph import END, START, StateGraph

        graph = StateGraph(RoundState)
        for name in ("context", "propose", "quick_test", "evaluate", "record", "reflect"):
            graph.add_node(name, getattr(self, name))
        graph.add_edge(START, "context")
        graph.add_edge("context", "propose")
        graph.add_conditional_edges(
            "propose",
            self.route_after_propose,
            ["propose", "quick_test", "evaluate", "record"],
        )
        graph.add_edge("quick_test", "propose")
        graph.add_edge("evaluate", "record")
        graph.add_edge("record", "reflect")
        graph.add_edge("reflect", END)
        return graph.compile()

    def run_round(self, number: int) -> dict:
        return self.graph.invoke({"round": number}, {"recursion_limit": 40})

    # --- context builders --------------------------------------------------------------

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
        path = self.run.candidate_dir(int(best["candidate"])) / "controller.py"
        return path.read_text() if path.exists() else None

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
            source_path = self.run.candidate_dir(int(r["candidate"])) / "controller.py"
            if best and source_path.exists():
                head += "\n```python\n" + source_path.read_text()[:6000] + "\n```"
            parts.append(head)
        return "\n\n".join(parts)

    def _baselines_text(self) -> str:
        cached = self.run.path / "baselines.json"
        if not cached.exists():
            from .pipeline import curves_with_baselines

            data = curves_with_baselines(None, "", self.settings.search_envs, self.settings)
            self.run.write_json("baselines.json", data)
        data = json.loads(cached.read_text())
        cmc = "; ".join(
            f"β={p['beta']:g}: {p['accuracy']:.2f}% @ {p['tokens'] / 1000:.1f}k"
            for p in data["cmc"]
        )
        sc = data["sc64"]
        return f"- SC@64: {sc['accuracy']:.2f}% @ {sc['tokens'] / 1000:.1f}k\n- CMC: {cmc}"

    def _objective_text(self) -> str:
        low, high = self.reference.token_range
        scored = self._scored()
        best = max(scored, key=ranking_key) if scored else None
        now = f"candidate {best['candidate']}: {best['objective']}" if best else "(none yet)"
        return prompt(
            "objective.md",
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


__all__ = ["LLMProposer", "extract_code", "select_failure_traces"]
