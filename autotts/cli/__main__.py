"""``python -m autotts.cli``."""

from .main import app

app()
