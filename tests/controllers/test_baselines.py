"""The baselines reproduce the published "measured" cells of reference-results.md."""

import pytest

from autotts.evaluation.evaluator import evaluate
from autotts.loading.run_configs import PAPER_PRESET, parse_spec
from autotts.results.evaluation_report import matches_reference, reference_cells, reference_for

PAPER_CONFIGS = [c for spec in PAPER_PRESET for c in parse_spec(spec)]


def _assert_reproduced(report):
    for row in report.rows:
        assert row.status == "ok", row.status
        ref = reference_for(row)
        assert ref is not None, (row.controller, row.setting, row.env_id)
        assert matches_reference(row), (
            row.controller,
            row.setting,
            row.env_id,
            row.accuracy,
            row.tokens_k,
            ref,
        )


def test_every_method_reproduces_qwen3_8b(env_dir):
    env_ids = ["Qwen3-8B/aime24", "Qwen3-8B/aime25"]
    report = evaluate(PAPER_CONFIGS, env_ids, env_dir=env_dir, trace_seeds=0)
    assert len(report.rows) == 6 * 2
    _assert_reproduced(report)


@pytest.mark.slow
def test_the_whole_published_table_reproduces(env_dir):
    env_ids = [f"Qwen3-{m}/{d}" for m in ("0.6B", "1.7B", "4B", "8B") for d in ("aime24", "aime25")]
    report = evaluate(PAPER_CONFIGS, env_ids, env_dir=env_dir, trace_seeds=0)
    assert len(report.rows) == len(reference_cells()) == 48
    _assert_reproduced(report)


def test_matching_is_not_vacuous(env_dir):
    """A wrong setting must not match the reference (SC@32 is not SC@64)."""
    report = evaluate(
        parse_spec("sc@n=32"), ["Qwen3-8B/aime24"], env_dir=env_dir, seeds=20, trace_seeds=0
    )
    row = report.rows[0]
    assert reference_for(row) is None
    row.setting = "n=64"
    assert not matches_reference(row)
