"""Builds the optional compiled replay loop; everything else is configured in pyproject.toml.

Without a C compiler the build skips the extension and autotts uses its pure-Python loop."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("autotts._replay_loop", ["autotts/_replay_loop.c"], optional=True)])
