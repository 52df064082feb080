"""Checks of the added statistics in analysis.stats against values computed by hand or by the libraries directly."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.power import TTestPower, tt_solve_power

from analysis.stats import (
    IQM_MIN_RUNS,
    hierarchical_bootstrap,
    holm,
    iqm,
    paired_hierarchical_bootstrap,
    probability_of_improvement,
    seeds_for_power,
    sign_flip_min_p,
    sign_flip_p,
    sign_flip_pairs_needed,
    variance_parts,
)


def test_holm_hand_computed():
    # sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_nan_left_out_of_family():
    # family of 2: 0.01*2 = 0.02, 0.04*1 = 0.04
    np.testing.assert_allclose(holm([0.01, math.nan, 0.04]), [0.02, math.nan, 0.04])
    assert np.isnan(holm([math.nan, math.nan])).all()
    assert holm([]).shape == (0,)


def test_sign_flip_small_hand_cases():
    # [1, 2, 3]: of the 8 sign patterns only +++ and --- reach |sum| 6
    assert sign_flip_p([1, 2, 3]) == 0.25
    assert sign_flip_p([1, 2, 3, math.nan]) == 0.25  # NaN ignored
    assert sign_flip_p([1] * 6) == 2 / 64
    # [3, 1, 1, 1, 1, -1], observed sum 6: the sum is +-3 plus five +-1 terms, i.e. +-3 + (5 - 2j) with j of the
    # five negative. With +3: j = 0 (1 pattern) gives 8 and j = 1 (5 patterns) gives 6; j >= 2 gives <= 4.
    # By symmetry -3 gives 6 more patterns with sum <= -6: 12 of 64.
    assert sign_flip_p([3, 1, 1, 1, 1, -1]) == 12 / 64
    assert math.isnan(sign_flip_p([]))
    assert sign_flip_p([0.0, 0.0, 0.0]) == 1.0


def test_sign_flip_matches_scipy_permutation_test():
    d = np.random.default_rng(3).normal(0.5, 1.0, 6)
    ref = stats.permutation_test(
        (d,),
        lambda x, axis: np.mean(x, axis=axis),
        vectorized=True,
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    )
    assert sign_flip_p(d) == pytest.approx(ref.pvalue, rel=1e-12)


def _exact_sign_flip_by_convolution(d: np.ndarray) -> float:
    """Independent exact p for integer differences: the count of patterns per sum is prod(x^-d + x^d)."""
    offset = int(np.abs(d).sum())
    counts = np.array([1], dtype=np.int64)
    for v in np.abs(d):
        term = np.zeros(2 * v + 1, dtype=np.int64)
        term[0] += 1  # += so that a zero difference counts its two sign patterns
        term[-1] += 1
        counts = np.convolve(counts, term)
    sums = np.arange(counts.size) - offset
    return counts[np.abs(sums) >= abs(d.sum())].sum() / 2.0**d.size


def test_sign_flip_exact_and_sampled_against_convolution():
    rng = np.random.default_rng(5)
    d12 = rng.integers(1, 6, 12) * rng.choice([-1, 1], 12) + 1
    assert sign_flip_p(d12) == pytest.approx(_exact_sign_flip_by_convolution(d12), rel=1e-12)
    # above 20 pairs 2^20 random patterns: within 5 Monte-Carlo standard errors of the exact value
    d24 = rng.integers(1, 6, 24) * rng.choice([-1, 1], 24) + 1
    exact = _exact_sign_flip_by_convolution(d24)
    assert 0.01 < exact < 0.99  # a case where sampling error is visible
    assert abs(sign_flip_p(d24) - exact) < 5 * math.sqrt(exact * (1 - exact) / 2**20)


def test_sign_flip_min_p_and_pairs_needed():
    assert sign_flip_min_p(3) == 0.25
    assert sign_flip_min_p(1) == 1.0
    assert sign_flip_min_p(0) == 1.0
    assert sign_flip_pairs_needed(0.05) == 6  # 2/32 = 0.0625 > 0.05 >= 2/64
    assert sign_flip_pairs_needed(0.25) == 3


def _crossed_study(rng, mu, sd_seed, sd_scene, sd_noise, k, m):
    """k seeds, each tested on the same m scenes: y = mu + seed effect + scene effect + noise."""
    seed_fx, scene_fx = rng.normal(0, sd_seed, k), rng.normal(0, sd_scene, m)
    return {
        s: {f"scene{j}": float(mu + seed_fx[s] + scene_fx[j] + rng.normal(0, sd_noise)) for j in range(m)}
        for s in range(k)
    }


def test_hierarchical_bootstrap_coverage():
    # Resampling seeds and scenes independently counts the interaction twice (slightly conservative), while the
    # percentile interval of few draws per level under-covers (spread (k-1)/k of the sample variance, normal
    # quantiles): simulated near nominal for this design. 400 studies: standard error ~0.011, hence 0.88..0.99.
    rng = np.random.default_rng(2024)
    mu, studies = 1.0, 400
    hits = 0
    for i in range(studies):
        study = _crossed_study(rng, mu, 0.5, 0.5, 0.5, 8, 8)
        interval = hierarchical_bootstrap(study, reps=2000, seed=i)
        hits += interval.low <= mu <= interval.high
    assert 0.88 <= hits / studies <= 0.99


def test_one_scene_draw_serves_every_seed():
    # A shared scene effect does not average out over seeds: 40 seeds with no seed effect and 4 scenes far apart
    # (0, 10, 20, 30): the replicate mean is the mean of 4 scenes drawn with replacement, Var = var0 / 4 = 31.25
    # (ddof 0), whatever the number of seeds. Drawing scenes afresh for each seed would shrink it 40-fold.
    values = {s: {f"c{j}": 10.0 * j for j in range(4)} for s in range(40)}
    interval = hierarchical_bootstrap(values, reps=40000, seed=1)
    assert interval.high - interval.low == pytest.approx(2 * 1.959964 * math.sqrt(31.25), rel=0.1)
    assert interval.estimate == pytest.approx(15.0)


def test_hierarchical_bootstrap_estimate_small_cases():
    # seed 1 lacks "b" (NaN), seed 2 has no finite value (dropped): the common scenes of seeds 0 and 1 are "a"
    values = {0: {"a": 1.0, "b": 3.0}, 1: {"a": 10.0, "b": math.nan, "c": 20.0}, 2: {"a": math.nan}}
    interval = hierarchical_bootstrap(values, reps=500)
    assert (interval.estimate, interval.n_seeds, interval.n_scenes) == (5.5, 2, 1)
    assert interval.low <= interval.estimate <= interval.high
    # one seed, scenes 0 and 1: replicate means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4
    one = hierarchical_bootstrap({5: {"a": 0.0, "b": 1.0}}, reps=4000)
    assert (one.estimate, one.low, one.high, one.n_seeds) == (0.5, 0.0, 1.0, 1)
    empty = hierarchical_bootstrap({})
    assert math.isnan(empty.estimate) and math.isnan(empty.low) and empty.n_seeds == 0


def test_paired_hierarchical_bootstrap_constant_shift():
    base = _crossed_study(np.random.default_rng(11), 0.0, 1.0, 1.0, 1.0, 5, 4)
    arm = {s: {c: v + 0.25 for c, v in scenes.items()} for s, scenes in base.items()}
    interval = paired_hierarchical_bootstrap(arm, base, reps=1000)
    for value in (interval.estimate, interval.low, interval.high):
        assert value == pytest.approx(0.25, abs=1e-12)
    assert (interval.n_seeds, interval.n_scenes) == (5, 4)


def test_paired_hierarchical_bootstrap_keeps_pairing():
    # Big seed and scene effects shared by both arms, a 0.1 gain and small per-run noise: with the same draws
    # for both arms the shared effects cancel, so the interval is narrow around 0.1, while an arm's own
    # interval is wide.
    rng = np.random.default_rng(13)
    k, m = 6, 8
    seed_fx, scene_fx = rng.normal(0, 10, k), rng.normal(0, 10, m)
    base = {s: {f"c{j}": seed_fx[s] + scene_fx[j] + rng.normal(0, 0.01) for j in range(m)} for s in range(k)}
    arm = {s: {c: v + 0.1 + rng.normal(0, 0.01) for c, v in scenes.items()} for s, scenes in base.items()}
    arm[99] = {"c0": 5.0}  # seed without a partner, and a scene only one arm has: both ignored
    arm[0]["extra"] = 1000.0
    paired = paired_hierarchical_bootstrap(arm, base, reps=4000)
    assert paired.low < 0.1 < paired.high
    assert paired.high - paired.low < 0.02
    assert (paired.n_seeds, paired.n_scenes) == (k, m)
    alone = hierarchical_bootstrap(base, reps=4000)
    assert alone.high - alone.low > 5
    none = paired_hierarchical_bootstrap({1: {"a": 1.0}}, {2: {"a": 1.0}})
    assert math.isnan(none.estimate) and math.isnan(none.high) and none.n_seeds == 0


def test_variance_parts_hand_computed():
    # seed means 2, 6, 4 -> sample variance 4, / k = 4 / 3; scene means 8/3, 4, 16/3 -> variance 16/9, / m = 16/27
    values = {0: {"a": 1, "b": 2, "c": 3}, 1: {"a": 5, "b": 6, "c": 7}, 2: {"a": 2, "b": 4, "c": 6}}
    assert variance_parts(values) == pytest.approx((4 / 3, 16 / 27))
    # equal seed means: no seed part; scene means 0.5 and 3.5 -> variance 4.5, / 2
    assert variance_parts({0: {"a": 1, "b": 3}, 1: {"a": 0, "b": 4}}) == pytest.approx((0.0, 2.25))
    # a scene one seed lacks is left out: scenes a, b only -> seed means 1.5, 6; scene means 3, 4.5
    assert variance_parts({0: {"a": 1, "b": 2, "c": 3}, 1: {"a": 5, "b": 7, "c": math.nan}}) == pytest.approx(
        (10.125 / 2, 1.125 / 2)
    )


def test_variance_parts_too_small():
    assert all(math.isnan(v) for v in variance_parts({0: {"a": 1, "b": 2}}))
    assert all(math.isnan(v) for v in variance_parts({0: {"a": 1}, 1: {"a": 2}}))


def test_seeds_for_power_against_statsmodels():
    d = np.random.default_rng(17).normal(0.6, 1.0, 7)
    effect = abs(d.mean()) / d.std(ddof=1)
    expected = max(2, math.ceil(tt_solve_power(effect_size=effect, alpha=0.05, power=0.8, alternative="two-sided")))
    assert seeds_for_power(d, alpha=0.05) == expected
    # effect 1 ([0, 1, 2]: mean 1, std 1): statsmodels gives ~9.94 pairs; the normal approximation
    # ((1.96 + 0.84) / 1)^2 ~ 7.8 plus the t correction of about 2 agrees roughly
    n_exact = tt_solve_power(effect_size=1.0, alpha=0.05, power=0.8, alternative="two-sided")
    assert 9 < n_exact < 10
    assert seeds_for_power([0.0, 1.0, 2.0, math.nan], alpha=0.05) == 10
    assert seeds_for_power([-2.0, -1.0, 0.0], alpha=0.05) == 10  # sign does not matter


def test_seeds_for_power_edge_cases():
    assert math.isnan(seeds_for_power([1.0], alpha=0.05))
    assert math.isnan(seeds_for_power([1.0, -1.0], alpha=0.05))  # mean 0
    assert seeds_for_power([0.5, 0.5, 0.5], alpha=0.05) == 2.0  # no spread
    # a huge effect, on which statsmodels' solver does not converge: the power of 2 pairs already reaches 0.8
    huge = [100.0, 100.001, 99.999]
    with pytest.warns(Warning):
        assert math.isnan(TTestPower().solve_power(effect_size=1e5, alpha=0.05, power=0.8))
    assert TTestPower().power(effect_size=1e5, nobs=2, alpha=0.05) > 0.8
    assert seeds_for_power(huge, alpha=0.05) == 2.0
    # an effect near zero needs more than MAX_SEEDS: NaN
    assert math.isnan(seeds_for_power([1e-3, -1.0, 1.0], alpha=0.05))


def test_probability_of_improvement_hand_cases():
    better = probability_of_improvement([5, 6, 7], [1, 2, 3])
    assert (better.estimate, better.low, better.high, better.n_seeds, better.n_scenes) == (1.0, 1.0, 1.0, 3, 0)
    # identical: 3 wins, 3 losses, 3 ties of 9 pairs -> (3 + 1.5) / 9
    assert probability_of_improvement([1, 2, 3], [1, 2, 3]).estimate == 0.5
    assert probability_of_improvement([5, 6, 7], [1, 2, 3], higher_is_better=False).estimate == 0.0
    assert probability_of_improvement([1, 2], [2, 3, math.nan], higher_is_better=False).estimate == 0.875
    assert math.isnan(probability_of_improvement([], [1.0]).estimate)


def test_probability_of_improvement_against_scipy():
    rng = np.random.default_rng(19)
    x, y = rng.integers(0, 8, 10).astype(float), rng.integers(0, 6, 12).astype(float)  # integers: ties occur
    n, m = x.size, y.size
    result = probability_of_improvement(x, y, reps=20000)
    assert result.estimate == pytest.approx(stats.mannwhitneyu(x, y).statistic / (n * m))
    lower = probability_of_improvement(x, y, higher_is_better=False)
    assert lower.estimate == pytest.approx(stats.mannwhitneyu(y, x).statistic / (n * m))
    # the interval against scipy's percentile bootstrap resampling both samples independently
    ref = stats.bootstrap(
        (x, y),
        lambda a, b, axis: stats.mannwhitneyu(a, b, axis=axis).statistic / (n * m),
        paired=False,
        vectorized=True,
        n_resamples=20000,
        method="percentile",
        rng=np.random.default_rng(0),
    ).confidence_interval
    assert result.low == pytest.approx(ref.low, abs=0.03)
    assert result.high == pytest.approx(ref.high, abs=0.03)


def test_iqm():
    # sorted 1, 3, 4, 5, 6, 7, 10, 100: the middle half is 4, 5, 6, 7 -> 5.5
    assert iqm([10, 1, 7, 3, 100, 5, 4, 6]) == 5.5
    assert IQM_MIN_RUNS == 5
    assert math.isnan(iqm([1, 2, 3, 4]))
    assert math.isnan(iqm([1, 2, 3, 4, math.nan]))
    assert iqm([1, 2, 3, 4, 100, math.inf]) == 3.0  # 5 finite: one trimmed on each side, mean of 2, 3, 4
