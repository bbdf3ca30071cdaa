"""Collaboration graphs as data: which models to spend on, how much, and how answers flow.

A graph is a DAG of nodes; an edge ``[a, b]`` means *b runs after a and sees what a found*.

Roles replay can execute:

- ``generate``: runs a controller (``controller``, default ``cmc``) on one ``model`` at
  ``beta``, optionally capped to ``width`` branches and ``max_depth`` intervals per branch;
  its *pool* is the final answers of its branches (latest probe answers of depth-capped ones).
- ``vote`` / ``weighted_vote``: majority over the pools of its inputs (``weights`` per input,
  default 1; ``normalize`` makes each input's pool sum to 1, i.e. one vote per input).
- ``escalate`` (confidence-gated cascade): one input; its successors run only when the
  input's vote confidence (ASC's Beta posterior) is below ``threshold``.
- ``early_exit`` (router): one input; when its confidence reaches ``threshold`` the graph
  answers with the input's leader at once, otherwise its successors run.

Roles that need generated *text* run on a live backend only (replay stores hold answers, not
text; compiling such a graph for replay raises a clear :class:`GraphError`, "needs a live
backend"). Each asks its ``model`` one question (``max_tokens``, default 2048) about its
inputs' answers:

- ``refine``: re-check the inputs' leading answer and give a final answer (which replaces it);
- ``fuse``: pick or derive the answer from the inputs' candidates and their vote counts;
- ``verify``: ask, for each of the inputs' top three candidates, whether it is correct, and
  keep the confirmed ones (all of them when none is confirmed).

A node runs when it has no inputs, or when at least one input ran and no gate input is
closed. The graph's answer is its single output node's (the only node without successors),
or, if that node was skipped, the vote over every pool that was produced. ``max_cost`` (per
question, in the environment's cost unit) stops starting new ``generate`` nodes once spent.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import BadInput

REPLAY_ROLES = ("generate", "vote", "weighted_vote", "escalate", "early_exit")
LIVE_ROLES = ("refine", "fuse", "verify")
GATES = ("escalate", "early_exit")
AGGREGATORS = ("vote", "weighted_vote")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class GraphError(BadInput):
    """A collaboration graph that cannot be used; the message names the node or edge."""


class Node(BaseModel):
    """One node of a collaboration graph (fields a role does not use must stay unset)."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    role: Literal[REPLAY_ROLES + LIVE_ROLES]  # type: ignore[valid-type]
    model: str | None = None
    controller: str | None = None
    beta: Fraction | None = None
    width: Annotated[int, Field(ge=1)] | None = None
    max_depth: Annotated[int, Field(ge=1)] | None = None
    threshold: Fraction | None = None
    weights: dict[str, Annotated[float, Field(ge=0.0)]] | None = None
    normalize: bool = False
    max_tokens: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="after")
    def _fields_of_its_role(self) -> Node:
        allowed = {
            "generate": {"model", "controller", "beta", "width", "max_depth"},
            "vote": set(),
            "weighted_vote": {"weights", "normalize"},
            "escalate": {"threshold"},
            "early_exit": {"threshold"},
        }.get(self.role, {"model", "max_tokens"})
        given = {
            name
            for name in (
                "model", "controller", "beta", "width", "max_depth", "threshold", "max_tokens"
            )
            if getattr(self, name) is not None
        }  # fmt: skip
        given |= {"weights"} if self.weights is not None else set()
        given |= {"normalize"} if self.normalize else set()
        extra = given - allowed
        if extra:
            raise ValueError(f"role {self.role!r} takes no {', '.join(sorted(extra))}")
        if self.role in ("generate", *LIVE_ROLES) and self.model is None:
            raise ValueError(f"role {self.role!r} needs a model")
        if self.role in GATES and self.threshold is None:
            raise ValueError(f"role {self.role!r} needs a threshold")
        return self


class CollabGraph(BaseModel):
    """A collaboration graph (see the module docstring); load with :meth:`load`."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")] = "graph"
    description: str = ""
    nodes: Annotated[list[Node], Field(min_length=1)]
    edges: list[tuple[str, str]] = []
    max_cost: Annotated[float, Field(gt=0)] | None = None

    @classmethod
    def load(cls, path: str | Path) -> CollabGraph:
        """A graph from YAML or JSON; every problem raises :class:`GraphError` with the file."""
        from ..utils.atomic_files import read_yaml_or_json

        data = read_yaml_or_json(path, GraphError, "graph")
        try:
            return cls.from_data(data)
        except GraphError as exc:
            raise GraphError(f"{path}: {exc}") from None

    @classmethod
    def from_data(cls, data) -> CollabGraph:
        """Validate a dict; structural problems (cycles, dangling edges) are checked too."""
        try:
            graph = cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise GraphError(f"{_where(data, first['loc'])}: {first['msg']}") from None
        graph.check_structure()
        return graph

    def dump(self, path: str | Path) -> None:
        """Write the graph as YAML (``.yaml``/``.yml``) or JSON, atomically."""
        from ..utils.atomic_files import atomic_write_text

        path = Path(path)
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["edges"] = [list(e) for e in self.edges]
        if path.suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = json.dumps(data, indent=2) + "\n"
        atomic_write_text(path, text)

    # --- structure -----------------------------------------------------------------------

    @property
    def by_id(self) -> dict[str, Node]:
        return {node.id: node for node in self.nodes}

    def inputs(self, node_id: str) -> list[str]:
        return [a for a, b in self.edges if b == node_id]

    def outputs(self, node_id: str) -> list[str]:
        return [b for a, b in self.edges if a == node_id]

    def check_structure(self) -> None:
        """Unique ids, known edge ends, no cycle, one output node, roles' inputs."""
        ids = [node.id for node in self.nodes]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate:
            raise GraphError(f"node id {duplicate!r} is used twice")
        for a, b in self.edges:
            for end in (a, b):
                if end not in ids:
                    raise GraphError(f"edge [{a}, {b}]: no node {end!r} (nodes: {ids})")
            if a == b:
                raise GraphError(f"edge [{a}, {b}] is a cycle of one node")
        self.order()  # raises on a cycle
        sinks = [i for i in ids if not self.outputs(i)]
        if len(sinks) != 1:
            raise GraphError(
                f"a graph needs exactly one output node (a node without successors); "
                f"found {len(sinks)}: {sinks}"
            )
        for node in self.nodes:
            n_in = len(self.inputs(node.id))
            if node.role in GATES:
                if n_in != 1:
                    raise GraphError(f"node {node.id!r} ({node.role}) needs exactly one input")
                if node.id in sinks:
                    raise GraphError(f"node {node.id!r} ({node.role}) cannot be the output")
            if node.role in AGGREGATORS and n_in == 0:
                raise GraphError(f"node {node.id!r} ({node.role}) has no inputs to vote over")
            if node.role in LIVE_ROLES and n_in == 0:
                raise GraphError(f"node {node.id!r} ({node.role}) needs inputs to work on")
            for key in node.weights or {}:
                if key not in self.inputs(node.id):
                    raise GraphError(
                        f"node {node.id!r}: weights name {key!r}, which is not one of its "
                        f"inputs {self.inputs(node.id)}"
                    )

    def order(self) -> list[Node]:
        """Nodes in a topological order (stable: listed order among ready nodes)."""
        remaining = {node.id: len(self.inputs(node.id)) for node in self.nodes}
        ordered: list[Node] = []
        ready = [node for node in self.nodes if remaining[node.id] == 0]
        while ready:
            node = ready.pop(0)
            ordered.append(node)
            for b in self.outputs(node.id):
                remaining[b] -= 1
                if remaining[b] == 0:
                    ready.append(self.by_id[b])
        if len(ordered) != len(self.nodes):
            stuck = [i for i, n in remaining.items() if n > 0]
            raise GraphError(f"the edges form a cycle through {stuck}; a graph must be a DAG")
        return ordered

    @property
    def output(self) -> str:
        return next(node.id for node in self.nodes if not self.outputs(node.id))

    def models(self) -> list[str]:
        return list(dict.fromkeys(n.model for n in self.nodes if n.model is not None))

    def needs_live(self) -> list[Node]:
        return [node for node in self.nodes if node.role in LIVE_ROLES]


def _where(data, loc: tuple) -> str:
    """'node 2 (draft), field beta' from a pydantic error location."""
    if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
        node_id = None
        with contextlib.suppress(AttributeError, IndexError, KeyError, TypeError):
            node_id = data["nodes"][loc[1]].get("id")
        label = f"node {loc[1]}" + (f" ({node_id})" if node_id else "")
        rest = ".".join(str(p) for p in loc[2:])
        return f"{label}, field {rest}" if rest else label
    return "field " + ".".join(str(p) for p in loc) if loc else "top level"


__all__ = ["CollabGraph", "GraphError", "Node"]
