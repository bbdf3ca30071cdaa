"""Collaboration graphs compiled to controllers.

:class:`GraphController` runs a :class:`~autotts.collab.graph.CollabGraph` as an ordinary
controller, so a graph is evaluated, traced, checked and exported like any other. Each
``generate`` node runs its controller on a private :class:`NodeView`: an
:class:`~autotts.EpisodeState` holding only that node's branches (ids 0, 1, … of its own),
with every ``Branch``/``Read`` sent to the node's model, width and depth caps applied. The
node controllers are the ordinary single-model controllers (``cmc``, ``asc``, a discovered
file), unchanged.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..core.contract import (
    ActionError,
    Answer,
    Branch,
    Continue,
    Controller,
    EpisodeState,
    Generate,
    Probe,
    Prune,
    Read,
)
from ..core.engine import inactive_message, requested_intervals
from ..core.voting import beta_confidence, top_two
from ..envs.answers import UNPARSABLE, extract_boxed
from ..loading.controller_files import ControllerLoadError, load_controller
from .graph import AGGREGATORS, LIVE_ROLES, CollabGraph, GraphError, Node

WIDTH_PARAMETERS = ("max_branches", "n")  # what a node's ``width`` overrides, first found


@dataclass
class Outcome:
    """What a node produced: weighted ``pool`` of answers, raw ``counts`` (for confidence),
    and its ``leader``. Gates produce ``open`` instead."""

    pool: Counter = field(default_factory=Counter)
    counts: Counter = field(default_factory=Counter)
    leader: str | None = None
    open: bool = True

    @property
    def confidence(self) -> float:
        _, top1, top2 = top_two(self.counts)
        return beta_confidence(top1, top2) if top1 else 0.0


class NodeView:
    """A generate node's private window on the episode: local ids, its model, its caps."""

    def __init__(self, shared: EpisodeState, model: str, width: int | None, max_depth: int | None):
        self.shared, self.model, self.max_depth = shared, model, max_depth
        limit = width if width is not None else shared.max_branches - shared.opened
        self.state = EpisodeState(shared.question, shared.delta, limit, (model,))
        self.ids: list[int] = []  # local id -> shared id
        self.local: dict[int, int] = {}
        self.capped: list[int] = []

    def _to_shared(self, ids) -> list[int]:
        s = self.state
        for i in ids:
            if type(i) is not int or not 0 <= i < len(self.ids):
                live = [not (f or p) for f, p in zip(s.finished, s.pruned, strict=True)]
                raise ActionError(inactive_message(i, live, s.pruned))
        return [self.ids[i] for i in ids]

    def _adopt(self, shared_ids) -> list[int]:
        s, g = self.state, self.shared
        local = list(range(len(self.ids), len(self.ids) + len(shared_ids)))
        for gi in shared_ids:
            self.local[gi] = len(self.ids)
            self.ids.append(gi)
            s.depth.append(0)
            s.answer.append(None)
            s.history.append(g.history[gi])  # the shared list: the engine appends to it
            s.finished.append(False)
            s.pruned.append(False)
            s.model.append(self.model)
        return local

    def act(self, action):
        """Translate one of the node controller's actions (a generator: yields the shared
        action, returns the node controller's reply)."""
        s, g = self.state, self.shared
        tokens, probe_tokens = g.tokens, g.probe_tokens
        reply = None
        if isinstance(action, Branch | Read):
            if type(action.k) is int and len(self.ids) + action.k > s.max_branches:
                raise ActionError(
                    f"cannot open {action.k} more branches: {len(self.ids)} of this node's "
                    f"{s.max_branches} already opened (state.max_branches)"
                )
            shared = (
                Branch(action.k, action.probe, self.model)
                if isinstance(action, Branch)
                else Read(action.k, self.model)
            )
            touched = list((yield shared))
            reply = self._adopt(touched)
            before = [False] * len(touched)
        elif isinstance(action, Continue | Probe | Prune):
            touched = self._to_shared(action.ids)
            before = [g.finished[i] for i in touched]
            if isinstance(action, Continue):
                continued = self._capped_continue(action, touched)
                if continued is None:
                    return None
                yield continued
            else:
                yield type(action)(touched)
        else:  # Note, or anything invalid (the engine reports it)
            yield action
            return None
        self._sync(touched, before)
        s.tokens += g.tokens - tokens
        s.probe_tokens += g.probe_tokens - probe_tokens
        return reply

    def _capped_continue(self, action: Continue, shared_ids) -> Continue | None:
        if self.max_depth is None:
            return Continue(shared_ids, action.steps, action.probe)
        requested_intervals(shared_ids, action.steps)  # bad steps: the engine's own error
        steps = action.steps
        per_id = [steps] * len(shared_ids) if isinstance(steps, int) else list(steps)
        room = [self.max_depth - self.shared.depth[i] for i in shared_ids]
        keep = [(i, min(n, r)) for i, n, r in zip(shared_ids, per_id, room, strict=True) if r > 0]
        if not keep:
            return None
        return Continue([i for i, _ in keep], [n for _, n in keep], action.probe)

    def _sync(self, touched, before) -> None:
        s, g, local = self.state, self.shared, self.local
        for gi, was_finished in zip(touched, before, strict=True):
            li = local[gi]
            s.depth[li] = g.depth[gi]
            s.answer[li] = g.answer[gi]
            if g.finished[gi] and not was_finished and not s.finished[li]:
                s.finished[li] = True
                s.finals.append(g.answer[gi])
            s.pruned[li] = g.pruned[gi]
            if self.max_depth is not None and not s.finished[li] and s.depth[li] >= self.max_depth:
                s.pruned[li] = True
                if li not in self.capped:
                    self.capped.append(li)

    def outcome(self, answer) -> Outcome:
        """The node's pool: its final answers, plus the latest parsable probe answer of each
        depth-capped branch; the node controller's answer leads."""
        s = self.state
        votes = list(s.finals) + [
            s.answer[i] for i in self.capped if s.answer[i] not in (None, UNPARSABLE)
        ]
        if isinstance(answer, Answer):
            answer = answer.value
        if not votes and isinstance(answer, str):
            votes = [answer]
        counts = Counter(votes)
        leader = answer if isinstance(answer, str) else top_two(counts)[0]
        return Outcome(Counter(counts), counts, leader)


class GraphController(Controller):
    """A collaboration graph as a controller. ``schedule(beta)`` scales every generate
    node's β and width (β=1 is the graph as written). Subclasses set ``graph_data`` (how an
    exported graph file looks); or pass a :class:`CollabGraph`."""

    name: ClassVar[str] = "graph"
    graph_data: ClassVar[dict | str | None] = None  # the graph, or its JSON text

    def __init__(self, graph: CollabGraph | None = None):
        if graph is None:
            data = self.graph_data
            if data is None:
                raise GraphError("GraphController needs a graph (or a graph_data class field)")
            graph = CollabGraph.from_data(json.loads(data) if isinstance(data, str) else data)
        self.graph = graph
        if type(self).name in ("", "graph"):
            self.name = graph.name
        self.description = graph.description
        self._order = graph.order()
        self._inputs = {node.id: graph.inputs(node.id) for node in graph.nodes}
        self._controllers: dict[str, Controller] = {}
        self._params: dict[tuple[str, float], dict] = {}
        for node in graph.nodes:
            if node.role == "generate":
                self._controllers[node.id] = _node_controller(node)
                self.node_params(node, 1.0)  # fails now for a bad width or β

    @staticmethod
    def schedule(beta: float) -> dict[str, Any]:
        return {"scale": float(beta)}

    def node_params(self, node: Node, scale: float) -> dict:
        """The node controller's parameters at graph scale ``scale``."""
        key = (node.id, scale)
        params = self._params.get(key)
        if params is None:
            controller = self._controllers[node.id]
            beta = (1.0 if node.beta is None else node.beta) * scale
            params = controller.params(beta)
            width = self.node_width(node, scale)
            if width is not None:
                name = next((p for p in WIDTH_PARAMETERS if p in params), None)
                if name is None:
                    raise GraphError(
                        f"node {node.id!r}: controller {controller.name!r} has no width parameter "
                        f"({' or '.join(WIDTH_PARAMETERS)}); drop 'width'"
                    )
                params[name] = width
            self._params[key] = params
        return params

    @staticmethod
    def node_width(node: Node, scale: float) -> int | None:
        return None if node.width is None else max(1, round(node.width * scale))

    def run(self, state: EpisodeState, scale: float = 1.0):
        graph, outcomes = self.graph, {}
        for node in self._order:
            inputs = [outcomes.get(i) for i in self._inputs[node.id]]
            if inputs and (
                all(o is None for o in inputs) or any(o is not None and not o.open for o in inputs)
            ):
                continue  # skipped: nothing upstream ran, or a gate stayed closed
            if node.role == "generate":
                spent = state.cost if state.cost is not None else state.tokens
                if graph.max_cost is not None and spent >= graph.max_cost:
                    continue
                outcomes[node.id] = yield from self._generate(state, node, scale)
            elif node.role in AGGREGATORS:
                outcomes[node.id] = _combine(node, self._inputs[node.id], outcomes)
            elif node.role in LIVE_ROLES:
                merged = _combine(node, self._inputs[node.id], outcomes)
                outcomes[node.id] = yield from _ask(state, node, merged)
            else:
                source = inputs[0]  # a gate has exactly one input
                confident = source.confidence >= node.threshold
                if node.role == "early_exit" and confident:
                    return Answer(
                        source.leader,
                        f"{node.id}: confidence {source.confidence:.3f} ≥ {node.threshold}",
                    )
                # a gate passes control, not votes: its successors run when it is open
                outcomes[node.id] = Outcome(open=node.role == "early_exit" or not confident)
        final = outcomes.get(graph.output)
        if final is None or final.leader is None:  # the output node was skipped
            pools = [o for o in outcomes.values() if o.pool]
            merged = sum((o.pool for o in pools), Counter())
            leader = top_two(merged)[0]
            return Answer(leader or "", "output node skipped: vote over every pool")
        return Answer(final.leader, f"{graph.output} of graph {graph.name}")

    def _generate(self, state: EpisodeState, node: Node, scale: float):
        view = NodeView(state, node.model, self.node_width(node, scale), node.max_depth)
        run = self._controllers[node.id].run(view.state, **self.node_params(node, scale))
        reply = None
        while True:
            try:
                action = run.send(reply)
            except StopIteration as stop:
                return view.outcome(stop.value)
            reply = yield from view.act(action)


PROMPTS = {
    "refine": "{question}\n\nA previous attempt concluded that the final answer is {answer}. "
    "Check that reasoning step by step, correct it if needed, and put the final answer "
    "within \\boxed{{}}.",
    "fuse": "{question}\n\nSeveral solvers answered this problem. Each candidate final answer, "
    "with the number of solvers that reached it:\n{candidates}\nWork out which one is correct "
    "(or the correct answer if none is) and put the final answer within \\boxed{{}}.",
    "verify": "{question}\n\nProposed final answer: {answer}\nIs this final answer correct? "
    "Reply with one word: yes or no.",
}


def _ask(state: EpisodeState, node: Node, merged: Outcome):
    """A live role: one or a few ``Generate`` actions about the inputs' answers."""
    ask = {"model": node.model, "max_tokens": node.max_tokens or 2048}
    if merged.leader is None:
        return merged
    if node.role in ("refine", "fuse"):
        candidates = "\n".join(f"- {a}: {v:g}" for a, v in merged.pool.most_common(5))
        prompt = PROMPTS[node.role].format(
            question=state.question, answer=merged.leader, candidates=candidates
        )
        answer = extract_boxed((yield Generate(prompt, **ask)))
        if answer is None:  # no usable answer: keep what the inputs said
            return merged
        return Outcome(Counter({answer: 1}), Counter({answer: 1}), answer)
    confirmed = Counter()
    for answer, votes in merged.pool.most_common(3):
        prompt = PROMPTS["verify"].format(question=state.question, answer=answer)
        reply = (yield Generate(prompt, **ask)).strip().lower()
        if reply.startswith("yes") or reply.rstrip(".").endswith("yes"):
            confirmed[answer] = votes
    if not confirmed:
        return merged
    return Outcome(
        confirmed, Counter({a: merged.counts[a] for a in confirmed}), top_two(confirmed)[0]
    )


def _combine(node: Node, inputs: list[str], outcomes: dict[str, Outcome]) -> Outcome:
    pool, counts = Counter(), Counter()
    for name in inputs:
        o = outcomes.get(name)
        if o is None or not o.pool:
            continue
        weight = (node.weights or {}).get(name, 1.0) if node.role == "weighted_vote" else 1.0
        total = sum(o.pool.values()) if node.normalize else 1.0
        for answer, votes in o.pool.items():
            pool[answer] += weight * votes / total
        counts.update(o.counts)
    return Outcome(pool, counts, top_two(pool)[0])


def _node_controller(node: Node) -> Controller:
    """The node's controller, loaded in this process: never a file marked as LLM-written
    (those run only in the sandbox, one controller at a time)."""
    from ..loading.controller_files import is_marked_untrusted

    name = node.controller or "cmc"
    if is_marked_untrusted(name):
        raise GraphError(
            f"node {node.id!r}: {name} is marked as LLM-written (untrusted); a graph runs its "
            "node controllers in-process, so it cannot use it. Evaluate the file on its own "
            "(in the sandbox), or review it and remove the mark to trust it."
        )
    try:
        controller = load_controller(name)
    except ControllerLoadError as exc:
        raise GraphError(f"node {node.id!r}: {exc}") from None
    if isinstance(controller, GraphController):
        raise GraphError(f"node {node.id!r}: a graph cannot run another graph as a controller")
    return controller


def graph_file_controller(path: Path) -> type[GraphController]:
    """The controller class of a graph file (``.yaml``/``.yml``/``.json``; the loader's entry
    point for those suffixes)."""
    try:
        graph = CollabGraph.load(path)
    except GraphError as exc:
        raise ControllerLoadError(str(exc)) from None
    data = graph.model_dump(mode="json")
    return type("LoadedGraph", (GraphController,), {"name": graph.name, "graph_data": data})


__all__ = ["GraphController", "NodeView", "Outcome", "graph_file_controller"]
