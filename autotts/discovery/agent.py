"""The LLM proposer: a LangGraph state machine over the ``openai`` client.

One graph invocation is one round::

    context → propose ─┬─ (ACTION: test) → quick_test → propose      (at most MAX_TESTS
                       ├─ (TRACES: …) → traces → propose           tests and trace requests)
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

import re
from typing import TypedDict

from ..results.run_directory import RunDirectory
from .llm import LLMClient
from .proposer import MAX_TESTS, Proposer
from .replies import extract_code, prompt, select_failure_traces
from .trace_requests import traces_text, wants_traces

MAX_RETRIES = 2  # after a garbage reply, ask again at most this many times per round


class RoundState(TypedDict, total=False):
    round: int
    messages: list[dict]
    source: str | None
    error: str | None
    retries: int
    tests: int
    wants_test: bool
    wants_traces: bool
    result: dict | None
    status: str
    lesson: str


class LLMProposer(Proposer):
    """Runs rounds of LLM proposals against a run directory (see :class:`.Proposer`)."""

    def __init__(
        self,
        run: RunDirectory,
        settings,
        llm: dict,
        api_key: str | None,
        envs: dict,
        isolate: bool = True,
    ):
        super().__init__(run, settings, envs, isolate)
        self.llm = llm
        self.client = LLMClient(run, llm, api_key)
        self.chat = self.client.chat
        self.graph = self._build_graph()

    # --- graph nodes -------------------------------------------------------------------

    def context(self, state: RoundState) -> RoundState:
        messages = [
            {"role": "system", "content": self.system_text()},
            {"role": "user", "content": self.round_text(state["round"])},
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
        if wants_traces(reply) and state.get("tests", 0) < MAX_TESTS:
            return {"messages": messages, "wants_traces": True, "error": None}
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
        return {
            "messages": messages,
            "source": source,
            "error": None,
            "wants_test": wants_test,
            "wants_traces": False,
        }

    def route_after_propose(self, state: RoundState) -> str:
        if state.get("wants_traces"):
            return "traces"
        if state.get("source") is None:
            return "propose" if state.get("retries", 0) <= MAX_RETRIES else "record"
        if state.get("wants_test") and state.get("tests", 0) < MAX_TESTS:
            return "quick_test"
        return "evaluate"

    def quick_test_node(self, state: RoundState) -> RoundState:
        tests = state.get("tests", 0) + 1
        report = self.quick_test(state["source"], state["messages"][-1]["content"])
        text = prompt("test_result.md", result=report, tests_left=MAX_TESTS - tests)
        messages = list(state["messages"]) + [{"role": "user", "content": text}]
        return {"messages": messages, "tests": tests}

    def traces_node(self, state: RoundState) -> RoundState:
        tests = state.get("tests", 0) + 1
        text = traces_text(self, state["messages"][-1]["content"])
        text += f"\n\n({MAX_TESTS - tests} tests or trace requests left this round)"
        messages = list(state["messages"]) + [{"role": "user", "content": text}]
        return {"messages": messages, "tests": tests, "wants_traces": False}

    def evaluate_node(self, state: RoundState) -> RoundState:
        result, status = self.evaluate(state["source"])
        return {"result": result, "status": status}

    def record_node(self, state: RoundState) -> RoundState:
        status = state.get("status") or "failed"
        self.record(state["round"], state.get("source"), state.get("result"), status,
                    state.get("error"))  # fmt: skip
        return {"status": status}

    def reflect_node(self, state: RoundState) -> RoundState:
        return {"lesson": self.reflect(state["round"])}

    def _build_graph(self):
        from langgraph.graph import END, START, StateGraph

        graph = StateGraph(RoundState)
        for name in ("context", "propose"):
            graph.add_node(name, getattr(self, name))
        for name in ("quick_test", "traces", "evaluate", "record", "reflect"):
            graph.add_node(name, getattr(self, f"{name}_node"))
        graph.add_edge(START, "context")
        graph.add_edge("context", "propose")
        graph.add_conditional_edges(
            "propose",
            self.route_after_propose,
            ["propose", "quick_test", "traces", "evaluate", "record"],
        )
        graph.add_edge("quick_test", "propose")
        graph.add_edge("traces", "propose")
        graph.add_edge("evaluate", "record")
        graph.add_edge("record", "reflect")
        graph.add_edge("reflect", END)
        return graph.compile()

    def run_round(self, number: int) -> dict:
        return self.graph.invoke({"round": number}, {"recursion_limit": 40})


__all__ = ["LLMProposer", "extract_code", "select_failure_traces"]
