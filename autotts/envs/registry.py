"""The environment registry: environment ids to :class:`~autotts.core.environment.Environment` objects.

An *environment* is a set of questions a controller can play episodes on; each
``(question, seed)`` episode is deterministic. The built-in types:

- ``MODEL/DATASET``: a replay store of one model (:class:`~autotts.envs.replay.ReplayEnvironment`);
- ``M1+M2+…/DATASET``: several models' stores of one dataset joined and priced
  (:class:`~autotts.envs.cross_model.CrossModelEnvironment`);
- live environments (:class:`~autotts.live.live_environment.LiveEnvironment`) are built from a backend, not
  from an id.

A new environment type is one subclass plus one :func:`register` call: ``make`` then builds
it from its ids everywhere an id is accepted (``evaluate``, ``check``, discovery, the CLI)::

    autotts.register("noisy", lambda env_id, env_dir=None, **kw: NoisyEnv(env_id, env_dir))
    env = autotts.make("noisy:Qwen3-8B/aime24")

Extra observations an environment type offers controllers go in
``EpisodeState.signals`` (see :class:`~autotts.core.contract.EpisodeState`), so controllers that
read them run unchanged wherever the signal exists.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..core.environment import Environment
from ..errors import BadInput

EnvironmentFactory = Callable[..., Environment]


@dataclass(frozen=True)
class EnvironmentType:
    """A registered environment type: which ids it claims and how to build one."""

    name: str
    factory: EnvironmentFactory
    matches: Callable[[str], bool]


def _cross_model(env_id: str, env_dir=None, **kwargs):
    from .cross_model import CrossModelEnvironment

    models, _, dataset = env_id.rpartition("/")
    return CrossModelEnvironment.load(dataset, models.split("+"), env_dir, **kwargs)


def _replay(env_id: str, env_dir=None, **kwargs):
    from .replay import ReplayEnvironment

    return ReplayEnvironment.load(env_id, env_dir, **kwargs)


# Built-in types; later registrations are tried first.
_TYPES: dict[str, EnvironmentType] = {
    "replay": EnvironmentType("replay", _replay, lambda env_id: "/" in env_id),
    "cross-model": EnvironmentType(
        "cross-model", _cross_model, lambda env_id: "+" in env_id.rpartition("/")[0]
    ),
}


def register(
    name: str, factory: EnvironmentFactory, matches: Callable[[str], bool] | None = None
) -> None:
    """Register an environment type. ``factory(env_id, env_dir=None, **kwargs)`` builds an
    :class:`Environment`; ``matches(env_id)`` says whether an id is of this type (default:
    ids starting with ``"NAME:"``). Types registered later are tried first, so a user type
    can claim ids a built-in one would take; registering a name again replaces it."""
    if not name or not callable(factory):
        raise ValueError("register(name, factory): a non-empty name and a callable factory")
    _TYPES.pop(name, None)
    _TYPES[name] = EnvironmentType(
        name, factory, matches or (lambda env_id: env_id.startswith(f"{name}:"))
    )


def registered_types() -> list[str]:
    """Names of the registered environment types, most recently registered first."""
    return list(reversed(_TYPES))


def environment_type(env_id: str) -> EnvironmentType:
    """The registered type that claims ``env_id``."""
    for kind in reversed(_TYPES.values()):
        if kind.matches(env_id):
            return kind
    raise BadInput(
        f"environment id {env_id!r} is of no registered type; ids look like MODEL/DATASET "
        f"(e.g. Qwen3-8B/aime24) or M1+M2/DATASET (registered: {', '.join(registered_types())})"
    )


def make(env_id: str, env_dir=None, **kwargs) -> Environment:
    """Build the environment of ``env_id`` (stores are read from ``env_dir``, see
    :func:`autotts.envs.stores.resolve_env_dir`); keyword arguments go to the type's factory."""
    kind = environment_type(env_id)
    env = kind.factory(env_id, env_dir, **kwargs)
    if not isinstance(env, Environment):
        raise TypeError(
            f"environment type {kind.name!r} built a {type(env).__name__} for {env_id!r}, "
            "not an autotts.Environment subclass"
        )
    return env


_SHARED: dict[tuple, Environment] = {}


def shared(env_id: str, env_dir=None, **kwargs) -> Environment:
    """The process-wide instance of ``make(env_id, env_dir, **kwargs)``: worker processes
    load each store once and reuse it for every unit of work."""
    key = (env_id, None if env_dir is None else str(env_dir), repr(sorted(kwargs.items())))
    if key not in _SHARED:
        _SHARED[key] = make(env_id, env_dir, **kwargs)
    return _SHARED[key]


def resolve_ids(patterns: Iterable[str], env_dir=None) -> list[str]:
    """Environment ids from ids and shell patterns over the stores found (``Qwen3-*/aime24``,
    ``all``), in order, each once. A plain id is passed through (``make`` checks it)."""
    from .stores import list_environments

    chosen: list[str] = []
    known: list[str] | None = None
    for pattern in patterns:
        if pattern == "all" or any(ch in pattern for ch in "*?["):
            if known is None:
                known = [info.env_id for info in list_environments(env_dir)]
            matched = known if pattern == "all" else fnmatch.filter(known, pattern)
            if not matched:
                raise BadInput(f"no environment matches {pattern!r} (known: {', '.join(known)})")
        else:
            matched = [pattern]
        chosen += [m for m in matched if m not in chosen]
    return chosen


__all__ = [
    "Environment",
    "EnvironmentType",
    "environment_type",
    "make",
    "register",
    "registered_types",
    "resolve_ids",
    "shared",
]
