from conftest import fixture_controller

from autotts.evaluation.checker import check_controller


def _items(report):
    return {item.name: item for item in report.items}


def test_cmc_passes_every_check(env_dir):
    report = check_controller("cmc", "Qwen3-8B/aime24", env_dir=env_dir, questions=4, seeds=2)
    assert report.ok, report.items
    assert set(_items(report)) == {"import", "schedule", "runs", "deterministic", "monotone cost"}


def test_cost_falling_with_beta_fails(env_dir):
    report = check_controller(
        fixture_controller("not_monotone"), "Qwen3-8B/aime24", env_dir=env_dir, questions=3, seeds=2
    )
    item = _items(report)["monotone cost"]
    assert not report.ok and not item.ok and "cost falls" in item.detail


def test_nondeterminism_fails(env_dir):
    report = check_controller(
        fixture_controller("nondeterministic"),
        "Qwen3-8B/aime24",
        env_dir=env_dir,
        questions=4,
        seeds=4,
    )
    assert not _items(report)["deterministic"].ok


def test_bad_files_fail_at_import(env_dir):
    for name, message in (
        ("syntax_error", "syntax error"),
        ("two_classes", "defines 2 (A, B) Controller subclasses"),
    ):
        report = check_controller(fixture_controller(name), "Qwen3-8B/aime24", env_dir=env_dir)
        assert [i.name for i in report.items] == ["import"] and message in report.items[0].detail
