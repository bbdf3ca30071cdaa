"""Serving controllers: an OpenAI-compatible test-time-scaling endpoint. One request is one
live episode of a served controller on the backend (:mod:`.request_episodes`); concurrent requests'
generations share engine batches (:class:`autotts.live.lockstep.LockstepBackend`), each
request keeping its own seed. :func:`app` builds the ASGI application (FastAPI) that
``autotts serve`` runs; embed it in your own stack the same way, or run it in a thread of
your own process with :func:`serving` (``with serving(app(...)) as url:``)."""

__all__ = ["app", "serving", "ServedControllers"]


def __getattr__(name: str):
    if name == "app":
        from .openai_api import app

        return app
    if name == "serving":
        from .background import serving

        return serving
    if name == "ServedControllers":
        from .served import ServedControllers

        return ServedControllers
    raise AttributeError(f"module 'autotts.serving' has no attribute {name!r}")
