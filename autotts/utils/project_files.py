"""Where autotts's own files are: the controller programs (``controllers/``) and the agents'
prompts and graphs (``agents/``).

In a source checkout (and an editable install of it) they are the checkout's top-level
folders. A wheel carries copies inside the package, in ``autotts/_bundled/``, which
``setup.py`` writes when it builds the package; so ``pip install .`` (or a wheel) finds the
built-in controllers, prompts and graphs without the checkout.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # autotts/
BUNDLED = ("controllers", "agents")


def project_dir(name: str) -> Path:
    """The folder ``name`` (one of :data:`BUNDLED`): the checkout's own when autotts runs
    from a checkout, else the copy inside the installed package."""
    checkout = PACKAGE_DIR.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / name).is_dir():
        return checkout / name
    return PACKAGE_DIR / "_bundled" / name
