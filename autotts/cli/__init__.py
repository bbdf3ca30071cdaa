"""The ``autotts`` command line: a thin layer that maps options to the library's functions
and its errors to exit codes (0 ok, 1 something failed, 2 bad input)."""

from .main import app

__all__ = ["app"]
