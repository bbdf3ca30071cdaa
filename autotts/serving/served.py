"""The controllers a server serves, and how a request names one: the model name is a served
controller (``cmc``) or a served controller at a β of the client's choice (``cmc@beta=0.3``);
``beta`` in the request body does the same. Anything else is :class:`UnknownModel`, whose
message lists what is served."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.contract import Controller, RemoteController
from ..errors import BadInput
from ..loading.run_configs import parse_spec
from ..sandbox.limits import SandboxLimits
from ..sandbox.sandboxed_controller import open_controller

DEFAULT_BETA = 0.5


class UnknownModel(BadInput):
    """A request named a model (controller) the server does not serve."""


@dataclass(frozen=True)
class Served:
    """One served controller: its ``name`` (what ``/v1/models`` lists), the loaded
    ``controller`` and the β a request gets when it names none."""

    name: str
    controller: Controller | RemoteController
    beta: float
    description: str = ""

    @property
    def sandboxed(self) -> bool:
        """Whether its episodes run in the sandbox (an LLM-written controller)."""
        return isinstance(self.controller, RemoteController)


class ServedControllers:
    """Served controllers from specs ``NAME_OR_PATH[@beta=B]`` (a file or a built-in name; β is
    the default for requests that name none, 0.5 when the spec names none). An LLM-written file
    (marked) is never imported here: it becomes a
    :class:`~autotts.sandbox.SandboxedController`, each request's episode played by a fresh
    isolated worker against the server's engine, under ``limits`` (default
    :data:`~autotts.sandbox.limits.EPISODE_LIMITS`). :meth:`close` ends their
    spare workers."""

    def __init__(self, specs, limits: SandboxLimits | None = None):
        self.served: dict[str, Served] = {}
        for spec in specs:
            configs = parse_spec(spec, default_betas=[DEFAULT_BETA])
            if len(configs) != 1 or configs[0].overrides:
                raise BadInput(
                    f"{spec!r}: serve a controller at one β at most (NAME or NAME@beta=B); "
                    "other parameters come from its schedule"
                )
            config = configs[0]
            controller = open_controller(config.controller, name=config.name, limits=limits)
            name = config.name
            if name in self.served:
                raise BadInput(f"{spec!r}: a controller named {name!r} is served already")
            beta = DEFAULT_BETA if config.beta is None else config.beta
            self.served[name] = Served(name, controller, beta, controller.description)
        if not self.served:
            raise BadInput("serve at least one controller (e.g. autotts serve cmc)")

    def close(self) -> None:
        """End the sandboxed controllers' spare workers."""
        for served in self.served.values():
            close = getattr(served.controller, "close", None)
            if close is not None:
                close()

    def names(self) -> list[str]:
        return list(self.served)

    def resolve(self, model: str, beta: float | None = None) -> tuple[Served, float]:
        """The served controller a request's ``model`` names and the β it runs at (``beta``
        from the request body wins over one in the name)."""
        name, _, rest = model.partition("@")
        served = self.served.get(name)
        if served is None:
            raise UnknownModel(
                f"model {model!r} is not served; served: {', '.join(self.served)} "
                "(each also as NAME@beta=B, 0 ≤ B ≤ 1)"
            )
        if rest:
            key, _, value = rest.partition("=")
            try:
                named = float(value) if key == "beta" else math.nan
            except ValueError:
                named = math.nan
            if not 0.0 <= named <= 1.0:
                raise BadInput(f"model {model!r}: after '@' give beta=B with 0 ≤ B ≤ 1")
            beta = named if beta is None else beta
        beta = served.beta if beta is None else beta
        if not 0.0 <= beta <= 1.0:
            raise BadInput(f"beta must lie in [0, 1], got {beta:g}")
        return served, beta


__all__ = ["DEFAULT_BETA", "Served", "ServedControllers", "UnknownModel"]
