"""``is_family_file`` decides that a file is scored by the compiled engine from its
``params(β)`` instead of being run. The compiled engine equals the policy on points of the
search space only, so a file whose schedule leaves the space must be run: these two pass the
shape check, score like CMC's neighbours in the compiled engine, and fail every episode when
run (an unknown ``run()`` keyword; an EMA window of 0 indexes an empty list)."""

import pytest

from autotts.discovery.composable import ComposableController
from autotts.discovery.family import is_family_file, render_schedule

HEAD = '"""A family."""\n\nfrom autotts import ComposableController\n\n\nclass F(ComposableController):\n'


def family_file(tmp_path, fixed=None, knots=None) -> str:
    path = tmp_path / "family.py"
    schedule = render_schedule(
        {**ComposableController.FIXED, **(fixed or {})},
        {**ComposableController.KNOTS, **(knots or {})},
    )
    path.write_text(HEAD + '    name = "f"\n' + schedule + "\n")
    return str(path)


def test_what_family_source_writes_is_a_family_file(tmp_path):
    assert is_family_file(family_file(tmp_path))


@pytest.mark.parametrize(
    "change",
    [
        {"fixed": {"temperature": 0.7}},  # no such run() parameter
        {"knots": {"ema_window": [(0.0, 0), (1.0, 0)]}},  # outside the space (1-10)
        {"fixed": {"widen": "sideways"}},  # no such choice
    ],
)
def test_a_schedule_outside_the_search_space_is_not_scored_as_a_family(tmp_path, change):
    assert not is_family_file(family_file(tmp_path, **change))


@pytest.mark.parametrize(
    "schedule",
    [
        "    KNOTS = {'width': [(0.0, 1e400), (1.0, 1e400)]}\n",  # infinite: int() overflows
        "    KNOTS = 5\n",  # not a mapping
        "    FIXED = {'width': {'nested': ()}}\n",
        "    KNOTS = {'width': [(0.0,), (1.0, 2, 3)]}\n",
        "    SWITCHES = [[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]\n",
    ],
)
def test_a_hand_edited_schedule_is_refused_not_raised(tmp_path, schedule):
    """``discover --resume`` reads the run's family file back: a hand edit gives False (the
    file is then run as any other), never an exception."""
    path = tmp_path / "family.py"
    path.write_text(HEAD + '    name = "f"\n' + schedule)
    assert is_family_file(str(path)) is False
