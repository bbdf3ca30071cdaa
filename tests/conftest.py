import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENVS = (ROOT / ".." / "shared" / "environments").resolve()
FIXTURE_CONTROLLERS = Path(__file__).parent / "fixtures" / "controllers"


@pytest.fixture(scope="session")
def env_dir() -> Path:
    """The shipped replay stores (CI always has ../shared beside the checkout)."""
    if not (SHARED_ENVS / "Qwen3-8B" / "aime24.json").is_file():
        pytest.fail(f"shipped replay stores not found at {SHARED_ENVS}; set up ../shared first")
    return SHARED_ENVS


def fixture_controller(name: str) -> str:
    return str(FIXTURE_CONTROLLERS / f"{name}.py")


def tiny_store(path: Path, branches, gold="7", delta=500, question="What is 3+4?") -> Path:
    """Write a one-question replay store with the given [probes, tokens, final] branches."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "question": question,
        "gold_answer": gold,
        "probe_freq": delta,
        "each_branch": branches,
        "final_answers_trace": [b[2] for b in branches],
    }
    path.write_text(json.dumps([record]))
    return path


# a discovery run small enough for a test: one search and one held-out environment, 2 seeds
SMALL_DISCOVERY = [
    "--search-env",
    "Qwen3-8B/aime24",
    "--heldout-env",
    "Qwen3-8B/aime25",
    "--seeds",
    "2",
    "--final-seeds",
    "2",
]
