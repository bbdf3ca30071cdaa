"""The discovery verdict claims a win or a match only when the paired interval supports it."""

import numpy as np

from autotts.discovery.run_report import verdict_lines
from autotts.discovery.verdict import judge


def _curve(points):
    return [
        {"setting": f"β={b}", "accuracy": float(np.mean(a)), "tokens": float(np.mean(t))}
        for b, (a, t) in points
    ]


def _case(family_gain: float, rng):
    """Two environments × 30 questions × 20 seeds; CMC and the family at the same costs,
    the family right on ``family_gain`` of the episodes CMC gets wrong."""
    tables = {"winner": [], "cmc": []}
    for level, tokens in enumerate((1e5, 2e5, 4e5)):
        cmc_acc, fam_acc, tok = [], [], []
        for _ in range(2):
            base = (rng.random((30, 20)) < 0.4 + 0.1 * level).astype(float)
            flip = (rng.random((30, 20)) < family_gain).astype(float)
            cmc_acc.append(100 * base)
            fam_acc.append(100 * np.maximum(base, flip))
            tok.append(np.full((30, 20), tokens) * (1 + 0.01 * rng.random((30, 20))))
        tables["cmc"].append((cmc_acc, tok))
        tables["winner"].append((fam_acc, tok))
    sc_tables = ([100 * (rng.random((30, 20)) < 0.6).astype(float) for _ in range(2)],
                 [np.full((30, 20), 1e6) for _ in range(2)])  # fmt: skip
    tables["sc64"] = sc_tables
    curves = {k: _curve(enumerate(tables[k])) for k in ("winner", "cmc")}
    sc = {"accuracy": float(np.mean(sc_tables[0])), "tokens": 1e6}
    return judge(curves["winner"], curves["cmc"], sc, tables)


def test_a_clear_gain_beats_cmc_and_a_tie_does_not():
    rng = np.random.default_rng(3)
    clear = _case(0.3, rng)
    assert clear["beats_cmc"] and clear["margin_vs_cmc"][1] > 0
    assert any("beats CMC" in line for line in verdict_lines(clear, "mine"))
    tie = _case(0.0, rng)
    assert tie["mean_margin_vs_cmc"] == 0 and not tie["beats_cmc"]
    lines = verdict_lines(tie, "mine")
    assert any("no significant difference from CMC" in line for line in lines)
    assert not any("beats" in line for line in lines)


def test_a_match_with_sc64_needs_the_interval():
    rng = np.random.default_rng(5)
    strong = _case(0.5, rng)  # ≈ 20+ points above SC@64 at 10–40 % of its tokens
    assert strong["matches_sc64"] and strong["sc64_shown_match"]["token_share"] <= 0.35
    weak = _case(0.0, rng)  # the means may come close, the interval does not show it
    assert not weak["matches_sc64"]
    assert any("not shown to match" in line for line in verdict_lines(weak, "mine"))


def test_without_outcomes_nothing_is_claimed():
    family = [{"setting": "β=1", "accuracy": 90.0, "tokens": 1e5}]
    cmc = [{"setting": "β=1", "accuracy": 50.0, "tokens": 1e5}]
    verdict = judge(family, cmc, {"accuracy": 60.0, "tokens": 1e6})
    assert verdict["ahead_of_cmc"] and not verdict["beats_cmc"] and not verdict["matches_sc64"]
    lines = verdict_lines(verdict, "mine")
    assert any("point estimate only" in line for line in lines)
    assert lines[-1].endswith("(+40.00 points; no interval recorded).")  # the 55 % window


def test_budget_windows_compare_the_best_settings_inside_with_a_paired_interval():
    rng = np.random.default_rng(11)
    clear = _case(0.3, rng)  # costs at 10, 20 and 40 % of SC@64's
    low, high = clear["windows"]
    assert (low["share"], high["share"]) == (0.30, 0.55)
    assert low["family_setting"] in ("β=0", "β=1") and high["family_setting"] == "β=2"
    for window in (low, high):
        mean, lo, hi = window["difference"]
        assert window["beats_cmc"] and 0 < lo < mean < hi
    lines = verdict_lines(clear, "mine")
    assert any(line.startswith("Within 30% of SC@64's tokens: mine β=") and "beats CMC" in line
               for line in lines)  # fmt: skip
    tie = _case(0.0, rng)
    assert not any(w["beats_cmc"] for w in tie["windows"])
    assert all(w["difference"][1] <= 0 <= w["difference"][2] for w in tie["windows"])
    pricey = [{"setting": "β=1", "accuracy": 90.0, "tokens": 4e5}]  # 40 % of SC@64's tokens
    cmc = [{"setting": "β=0", "accuracy": 50.0, "tokens": 1e5}]
    verdict = judge(pricey, cmc, {"accuracy": 60.0, "tokens": 1e6})
    assert verdict["windows"][0]["family"] is None
    assert "mine has no setting this cheap" in verdict_lines(verdict, "mine")[-2]
