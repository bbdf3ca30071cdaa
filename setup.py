"""Builds the optional compiled replay loop and bundles the project's own files; everything
else is configured in pyproject.toml.

Without a C compiler the build skips the extensions and autotts uses their pure-Python
specifications.
A built (non-editable) package carries copies of ``controllers/`` and ``agents/`` in
``autotts/_bundled/`` (see ``autotts/utils/project_files.py``)."""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("controllers", "agents")


class BuildWithProjectFiles(build_py):
    """``build_py`` that also copies ``controllers/`` and ``agents/`` into the package."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout
            return
        for name in BUNDLED:
            shutil.copytree(
                ROOT / name,
                Path(self.build_lib) / "autotts" / "_bundled" / name,
                dirs_exist_ok=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )


setup(
    ext_modules=[
        Extension("autotts.envs._replay_loop", ["autotts/envs/_replay_loop.c"], optional=True),
        Extension(
            "autotts.sandbox._wire",
            ["autotts/sandbox/_wire.c"],
            depends=["autotts/sandbox/_frames.h"],
            optional=True,
        ),
        Extension(
            "autotts.sandbox._mirror",
            ["autotts/sandbox/_mirror.c"],
            depends=["autotts/sandbox/_frames.h"],
            optional=True,
        ),
    ],
    cmdclass={"build_py": BuildWithProjectFiles},
)
