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
from string import Template
from typing import Any, TypedDict

from ..bundled import project_dir
from ..rundir import RunDirectory, RunError
from ..sandbox import SandboxLimits, static_problems
from .candidates import CandidateResult, evaluate_candidate
from .family import curve_score
from .llm import LLMClient

PROMPTS = project_dir("agents")
MAX_RETRIES = 2  # after a garbage reply, ask again at most this many times per round
MAX_TESTS = 2
QUICK_BETAS = [0.0, 0.5, 1.0]
TRACE_BUDGET_CHARS = 4000
CODE_BLOCK = re.compile(r"```(?:python|py)?[ \t]*\n(.*?)```", re.DOTALL)


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


def prompt(name: str, **values: Any) -> str:
    """A prompt file of ``agents/`` with ``$placeholders`` filled in."""
    return Template((PROMPTS / name).read_text()).safe_substitute(**values)


EDIT_BLOCK = re.compile(r"<<<<<<< SEARCH\n(.*?)\n=======\n(.*?)\n?>>>>>>> REPLACE", re.DOTALL)


def apply_edits(base: str, reply: str) -> tuple[str | None, str | None]:
    """Apply SEARCH/REPLACE edit blocks to ``base``: ``(source, None)`` or ``(None, why)``."""
    source = base
    for search, replace in EDIT_BLOCK.findall(reply):
        if source.count(search) != 1:
            found = "not found" if search not in source else "found more than once"
            first = search.strip().splitlines()[0] if search.strip() else ""
            return None, f"edit failed: the SEARCH text starting {first!r} was {found} in the base"
        source = source.replace(search, replace)
    return source, None


def extract_code(reply: str | None, base: str | None = None) -> tuple[str | None, str | None]:
    """The controller a reply proposes — a whole file in a ```python block, or SEARCH/REPLACE
    edits of ``base`` (the best candidate so far): ``(source, None)`` or ``(None, why the
    reply is unusable)``."""
    if not reply or not reply.strip():
        return None, "the reply was empty"
    blocks = CODE_BLOCK.findall(reply)
    if blocks:
        source = max(blocks, key=len)
    elif EDIT_BLOCK.search(reply):
        if base is None:
            return None, "edit blocks need a base, and there is no accepted candidate yet"
        source, error = apply_edits(base, reply)
        if error:
            return None, error
    elif "```" in reply or "<<<<<<< SEARCH" in reply:
        return None, "the code block is not closed (truncated reply?)"
    else:
        return None, "the reply has no ```python code block (nor SEARCH/REPLACE edits)"
    problems = static_problems(source)
    if problems:
        return None, "static check failed: " + "; ".join(problems[:5])
    if "Controller" not in source:
        return None, "the code defines no autotts.Controller subclass"
    return source, None


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
        self.graph = self._build_graph()

    # --- graph nodes -------------------------------------------------------------------

    def context(self, state: RoundState) -> RoundState:
        user = prompt(
            "proposer_round.md",
            round=state["round"] + 1,
            rounds=self.settings.trials,
            envs=", ".join(self.settings.search_envs),
            baselines=self._baselines_text(),
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
        return {"result": _result_dict(result), "status": "ok" if result.ok else "rejected"}

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
        self.run.append(
            {
                "event": "round",
                "stage": "llm",
                "round": number,
                "candidate": f"{number:04d}",
                "status": status,
                "reason": reason,
                "score": curve_score(result["curve"]) if status == "ok" else None,
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
        rounds = self.run.rounds()
        mine = rounds[-1] if rounds else {}
        scores = [r["score"] for r in rounds[:-1] if r.get("score") is not None]
        if mine.get("status") != "ok":
            lesson = f"round {mine.get('round')}: rejected: {mine.get('reason', '')[:300]}"
        else:
            prior = max(scores) if scores else None
            verdict = "new best" if prior is None or mine["score"] > prior else "not better"
            lesson = f"round {mine['round']}: score {mine['score']:.1f} ({verdict}); " + ", ".join(
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
        best = max(scored, key=lambda r: r["score"])
        path = self.run.candidate_dir(int(best["candidate"])) / "controller.py"
        return path.read_text() if path.exists() else None

    def _candidates_text(self, best: bool) -> str:
        rounds = [r for r in self.run.rounds() if r.get("stage") == "llm"]
        chosen = sorted(self._scored(), key=lambda r: -r["score"])[:2] if best else rounds[-3:]
        if not chosen:
            return "(none yet)"
        parts = []
        for r in chosen:
            head = f"## candidate {r['candidate']} ({r['status']})"
            if r["status"] == "ok":
                curve = "; ".join(f"β={b:g}: {a:.2f}% @ {t / 1000:.1f}k" for b, a, t in r["curve"])
                head += f", score {r['score']:.1f}\ncurve: {curve}"
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

    def _traces_text(self) -> str:
        scored = self._scored()
        if not scored:
            return "(none yet)"
        best = max(scored, key=lambda r: r["score"])
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


def select_failure_traces(traces: list[dict], budget_chars: int) -> str:
    """Wrong stops first (gold was visible yet another answer was returned), then the most
    wasteful correct episodes; rendered compactly within ``budget_chars``."""

    def seen_gold(t: dict) -> bool:
        return any(t["gold"] in step["revealed"] for step in t["steps"])

    wrong = sorted(
        (t for t in traces if not t["correct"] and seen_gold(t)), key=lambda t: t["tokens"]
    )
    wasteful = sorted((t for t in traces if t["correct"]), key=lambda t: -t["branches"])
    out: list[str] = []
    used = 0
    for kind, group in (("wrong stop", wrong[:3]), ("wasted branches", wasteful[:2])):
        for t in group:
            text = render_trace(t, kind)
            if used + len(text) > budget_chars:
                return "\n\n".join(out) or "(traces over budget)"
            out.append(text)
            used += len(text)
    return "\n\n".join(out) or "(no failures in the recorded traces)"


def render_trace(t: dict, kind: str, max_steps: int = 12) -> str:
    head = (
        f"[{kind}] {t['env']} q{t['question']} seed {t['seed']} {t['setting']}: answered "
        f"{t['answer']!r}, gold {t['gold']!r}, {t['branches']} branches, {t['tokens']:,} tokens; "
        f"stop reason: {t['reason'] or '-'}"
    )
    steps = t["steps"]
    shown = steps if len(steps) <= max_steps else steps[: max_steps // 2] + steps[-max_steps // 2 :]
    lines = [head]
    for i, s in enumerate(shown):
        if len(steps) > max_steps and i == max_steps // 2:
            lines.append(f"  … {len(steps) - max_steps} steps …")
        revealed = ",".join(str(a) for a in s["revealed"][:16])
        lines.append(f"  {s['action']} {s['ids'][:16]} → [{revealed}] tokens={s['tokens']:,}")
    return "\n".join(lines)


MAX_ENDPOINT_FAILURES = 3  # consecutive rounds whose LLM request failed: the run stops


def run_llm_discovery(
    run: RunDirectory, settings, config: dict, api_key, console=None, isolate: bool = True
) -> dict:
    """Run (or continue) LLM rounds until ``settings.trials`` rounds are recorded, then pick
    the best candidate on the search set (recorded as the ``best`` stage). Candidates run in
    the OS sandbox; ``isolate=False`` (``--unsafe-no-sandbox``) runs them without it."""
    from ..replay import ReplayEnvironment

    envs = {e: ReplayEnvironment.load(e, settings.env_dir) for e in settings.search_envs}
    proposer = LLMProposer(run, settings, config["llm"], api_key, envs, isolate)
    done = len([r for r in run.rounds() if r.get("stage") == "llm"])
    failures = 0
    for number in range(done, settings.trials):
        outcome = proposer.run_round(number)
        if console is not None:
            console.print(
                f"round {number + 1}/{settings.trials}: {outcome.get('status')} — "
                f"{outcome.get('lesson', '')[:160]}",
                highlight=False,
            )
        error = outcome.get("error") or ""
        failures = failures + 1 if error.startswith("LLM request failed") else 0
        if failures >= MAX_ENDPOINT_FAILURES:
            raise RunError(
                f"the LLM endpoint failed {failures} rounds in a row (last: {error[:300]}); "
                f"the run stops here. Fix the endpoint, then resume the run in {run.path}"
            )
    scored = proposer._scored()
    if scored and not run.stage_done("best"):
        best = max(scored, key=lambda r: r["score"])
        run.finish_stage("best", candidate=best["candidate"], score=best["score"])
    best = run.stage_done("best")
    if best and not run.stage_done("judged"):
        judge_best(run, settings, best["candidate"], config.get("name", "discovered"), isolate)
        run.finish_stage("judged")
    return {"rounds": [r for r in run.rounds() if r.get("stage") == "llm"], "best": best}


def judge_best(
    run: RunDirectory, settings, candidate: str, name: str, isolate: bool = True
) -> None:
    """The chosen candidate's full β curve (sandboxed, ``final_seeds``) next to CMC and
    SC@64, on the search and the held-out environments (``search.json``, ``heldout.json``)."""
    from ..evaluation import DEFAULT_BETAS
    from ..replay import ReplayEnvironment
    from .pipeline import curves_with_baselines, write_judgement

    source = (run.candidate_dir(int(candidate)) / "controller.py").read_text()
    targets = (("search.json", settings.search_envs), ("heldout.json", settings.heldout_envs))
    for relative, env_ids in targets:
        if not env_ids:
            continue
        envs = {e: ReplayEnvironment.load(e, settings.env_dir) for e in env_ids}
        result = evaluate_candidate(
            source,
            envs,
            list(DEFAULT_BETAS),
            settings.final_seeds,
            workers=settings.workers or 2,
            trace_seeds=0,
            limits=SandboxLimits(cpu_s=3600),
            isolate=isolate,
        )
        data = curves_with_baselines(None, name, env_ids, settings)
        data["name"] = name
        data["status"] = "ok" if result.ok else f"rejected: {result.reason}"
        data["winner"] = [{"setting": f"β={p['beta']:g}", **p} for p in result.curve]
        if result.ok:
            write_judgement(run, relative, data)
        else:
            run.write_json(relative, data)


__all__ = ["LLMProposer", "extract_code", "run_llm_discovery", "select_failure_traces"]
