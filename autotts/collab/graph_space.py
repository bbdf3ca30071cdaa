"""The space of collaboration graphs both searches explore: a few structures over up to three
model slots, every choice categorical so Optuna and the agent's probabilistic graph see the
same decisions.

Structures (slots A, B, C each = model × node controller × β):

- ``single``: A alone;
- ``vote``: A and B, weighted vote (B's weight ``b_weight``);
- ``cascade``: A, then B only when A's confidence is below ``threshold``; weighted vote;
- ``exit``: A; answer at once when A's confidence reaches ``threshold``, else run B and vote;
- ``cascade3``: A → (unsure) B → (still unsure) C, weighted vote over all three.
"""

from __future__ import annotations

from dataclasses import dataclass

from .graph import CollabGraph

STRUCTURES = ("single", "vote", "cascade", "exit", "cascade3")
CONTROLLERS = ("cmc", "asc", "sc")
BETAS = tuple(round(0.1 * i, 1) for i in range(11))
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)
WEIGHTS = (0.5, 1.0, 2.0, 4.0)
SLOTS = {"single": "a", "vote": "ab", "cascade": "ab", "exit": "ab", "cascade3": "abc"}


@dataclass(frozen=True)
class Decision:
    name: str
    options: tuple


class GraphSpace:
    """Decisions and how a set of choices becomes a :class:`CollabGraph`."""

    def __init__(self, models: tuple[str, ...]):
        self.models = tuple(models)
        decisions = [Decision("structure", STRUCTURES)]
        for slot in "abc":
            decisions += [
                Decision(f"{slot}_model", self.models),
                Decision(f"{slot}_controller", CONTROLLERS),
                Decision(f"{slot}_beta", BETAS),
            ]
        decisions += [Decision("threshold", THRESHOLDS), Decision("b_weight", WEIGHTS)]
        self.decisions = {d.name: d for d in decisions}

    def used(self, structure: str) -> list[str]:
        """The decisions a structure reads, in the order to choose them."""
        names = ["structure"]
        for slot in SLOTS[structure]:
            names += [f"{slot}_model", f"{slot}_controller", f"{slot}_beta"]
        if structure != "single":
            names.append("b_weight")
        if structure in ("cascade", "exit", "cascade3"):
            names.append("threshold")
        return names

    def build(self, choices: dict) -> CollabGraph:
        """The graph of ``choices`` (only the decisions its structure uses are read)."""
        structure = choices["structure"]
        slots = SLOTS[structure]
        nodes = [
            {
                "id": slot,
                "role": "generate",
                "model": choices[f"{slot}_model"],
                "controller": choices[f"{slot}_controller"],
                "beta": choices[f"{slot}_beta"],
            }
            for slot in slots
        ]
        edges: list[list[str]] = []
        if structure == "vote":
            edges = [["a", "out"], ["b", "out"]]
        elif structure in ("cascade", "exit"):
            role = "escalate" if structure == "cascade" else "early_exit"
            nodes.append({"id": "gate", "role": role, "threshold": choices["threshold"]})
            edges = [["a", "gate"], ["gate", "b"], ["a", "out"], ["b", "out"]]
        elif structure == "cascade3":
            for gate, before, after in (("gate1", "a", "b"), ("gate2", "b", "c")):
                nodes.append({"id": gate, "role": "escalate", "threshold": choices["threshold"]})
                edges += [[before, gate], [gate, after]]
            edges += [["a", "out"], ["b", "out"], ["c", "out"]]
        if structure != "single":
            weight = choices["b_weight"]
            weights = {slot: (1.0 if slot == "a" else weight) for slot in slots}
            nodes.append({"id": "out", "role": "weighted_vote", "weights": weights})
        return CollabGraph.from_data({"name": self.label(choices), "nodes": nodes, "edges": edges})

    def label(self, choices: dict) -> str:
        """A short readable name, e.g. ``cascade-Qwen3-1.7B.cmc0.3-Qwen3-8B.cmc0.5-t0.9-w2``."""
        structure = choices["structure"]
        parts = [structure] + [
            f"{choices[f'{s}_model']}.{choices[f'{s}_controller']}{choices[f'{s}_beta']:g}"
            for s in SLOTS[structure]
        ]
        if "threshold" in self.used(structure):
            parts.append(f"t{choices['threshold']:g}")
        if structure != "single":
            parts.append(f"w{choices['b_weight']:g}")
        return "-".join(parts)


__all__ = ["GraphSpace", "Decision", "STRUCTURES"]
