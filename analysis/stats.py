"""Statistics of a comparison over seeds: mean +- std per arm, and paired differences to the baseline.

Seeds pair the runs: arm and baseline with the same seed saw the same data order and initialisation, so the
difference per seed removes that shared noise. The difference is tested with a two-sided paired t-test
(``scipy.stats.ttest_rel``) and its 95 % confidence interval is the t interval of the mean paired difference
(n - 1 degrees of freedom). With fewer than two pairs both are undefined (NaN, shown as "n/a"). When every
paired difference is the same, the t statistic is 0/0 or +-inf; the test's limits are used: p = 1 when the
differences are all zero (identical arms), p = 0 otherwise, and the interval shrinks to that difference.

Further methods, for the tables:
- ``holm``: Holm step-down adjustment of the per-arm p-values (many arms against one baseline is a family of
  tests); NaN p-values are left out of the family.
- ``sign_flip_p``: exact paired sign-flip permutation test of mean difference = 0, free of the t-test's normality
  assumption; with n pairs its p-value cannot go below 2 / 2^n (``sign_flip_min_p``, ``sign_flip_pairs_needed``).
- ``hierarchical_bootstrap`` / ``paired_hierarchical_bootstrap``: percentile intervals from a two-level bootstrap
  that resamples training seeds and test scenes (one scene draw for every seed: all are tested on the same
  scenes), so both sources of noise enter the interval; ``variance_parts`` splits the variance of the mean into
  its seed and test-set parts (two-way random effects).
- ``seeds_for_power``: paired seeds needed for the t-test to detect the observed effect (statsmodels TTestPower).
- ``probability_of_improvement`` and ``iqm``: the rliable summaries (Agarwal et al., 2021), P(arm run beats a
  baseline run) with a bootstrap interval, and the interquartile mean of the runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

CONFIDENCE = 0.95
IQM_MIN_RUNS = 5  # rliable: the interquartile mean needs at least 5 runs to trim anything on both sides
MAX_SEEDS = 10_000  # seeds_for_power gives up beyond this (an effect near zero)
SIGN_FLIP_EXACT_MAX = 20  # above this many pairs the sign-flip test samples 2^20 random sign patterns
METHOD = (
    "two-sided paired t-test over seeds (scipy.stats.ttest_rel); 95 % CI of the mean paired difference from the t "
    "distribution with n - 1 degrees of freedom; n/a with fewer than 2 pairs"
)


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof 1; NaN for one value) of the finite values, and their count."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    return Summary(
        mean=float(x.mean()) if x.size else math.nan,
        std=float(x.std(ddof=1)) if x.size > 1 else math.nan,
        n=int(x.size),
    )


@dataclass(frozen=True)
class PairedDifference:
    """Mean of (arm - baseline) over the seeds both have, its confidence interval and the paired test's p-value."""

    mean: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int


def paired_difference(arm: Mapping[int, float], baseline: Mapping[int, float]) -> PairedDifference:
    """Paired by seed: only seeds with a finite value in both arms count."""
    seeds = sorted(s for s in arm.keys() & baseline.keys() if math.isfinite(arm[s]) and math.isfinite(baseline[s]))
    a = np.asarray([arm[s] for s in seeds], float)
    b = np.asarray([baseline[s] for s in seeds], float)
    d = a - b
    n = len(seeds)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, 0)
    mean = float(d.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, math.nan, n)
    if np.all(d == d[0]):  # no spread: the t statistic is 0/0 (identical arms) or +-inf
        return PairedDifference(mean, mean, mean, 1.0 if mean == 0 else 0.0, n)
    test = stats.ttest_rel(a, b)
    ci = test.confidence_interval(CONFIDENCE)
    return PairedDifference(mean, float(ci.low), float(ci.high), float(test.pvalue), n)


def _is_finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def _finite(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([math.nan if v is None else v for v in values], float)
    return x[np.isfinite(x)]


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm-adjusted p-values in input order; controls the family-wise error over the arms without assuming
    independence. NaN entries stay NaN and do not count in the family size."""
    p = np.asarray([math.nan if v is None else v for v in p_values], float)
    out = np.full(p.shape, math.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def sign_flip_p(differences: Sequence[float]) -> float:
    """Two-sided paired sign-flip permutation test of mean difference = 0 over the finite differences.

    Under the null each difference is as likely to have either sign, so the p-value is the share of the 2^n
    sign patterns whose |mean| is at least the observed |mean| (ties count, up to a 1e-12 relative tolerance).
    Exact for n <= 20; above that 2^20 random patterns from ``np.random.default_rng(0)`` are drawn and the
    observed pattern is counted in, p = (hits + 1) / (2^20 + 1), so p > 0. NaN for no differences.
    """
    d = _finite(differences)
    n = d.size
    if n == 0:
        return math.nan
    if np.all(d == 0):
        return 1.0
    observed = abs(d.sum())
    threshold = observed - 1e-12 * np.abs(d).sum()  # tolerance on the scale of the sums, so ties count
    if n <= SIGN_FLIP_EXACT_MAX:
        sums = np.zeros(1)
        for v in d:  # sums of every sign pattern, built one difference at a time (2^n values)
            sums = np.concatenate([sums + v, sums - v])
        return float(np.mean(np.abs(sums) >= threshold))
    rng = np.random.default_rng(0)
    total, hits, chunk = 2**20, 0, 2**14
    for _ in range(total // chunk):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(chunk, n))
        hits += int(np.count_nonzero(np.abs(signs @ d) >= threshold))
    return (hits + 1) / (total + 1)


def sign_flip_min_p(n: int) -> float:
    """Smallest two-sided p-value the exact sign-flip test can give with n pairs: 2 / 2^n (all signs agree)."""
    return min(1.0, 2.0 ** (1 - max(int(n), 0)))


def sign_flip_pairs_needed(alpha: float) -> int:
    """Fewest pairs with which the exact sign-flip test can reach p <= alpha at all (e.g. 6 for 0.05)."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    n = 1
    while sign_flip_min_p(n) > alpha:
        n += 1
    return n


@dataclass(frozen=True)
class Interval:
    """Point estimate with a percentile bootstrap interval, and the numbers of seeds and distinct scenes used."""

    estimate: float
    low: float
    high: float
    n_seeds: int
    n_scenes: int


def _grid(values: Mapping[int, Mapping[str, float]]) -> np.ndarray:
    """``[seeds, scenes]`` of the scenes every seed has a finite value for (seeds without any such scene dropped):
    every seed of a study is tested on the same scenes, so seeds and scenes are crossed, not nested."""
    rows = {s: {c: v for c, v in values[s].items() if _is_finite(v)} for s in sorted(values)}
    rows = {s: r for s, r in rows.items() if r}
    common = sorted(set.intersection(*(set(r) for r in rows.values()))) if rows else []
    return np.asarray([[r[c] for c in common] for r in rows.values()], float).reshape(len(rows), len(common))


def _bootstrap_grid(grid: np.ndarray, reps: int, confidence: float, seed: int) -> Interval:
    k, m = grid.shape
    if k == 0 or m == 0:
        return Interval(math.nan, math.nan, math.nan, k, m)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, k, size=(reps, k, 1))  # one draw of seeds and one of scenes per replicate: the
    scenes = rng.integers(0, m, size=(reps, 1, m))  # scenes drawn are the same for every seed drawn
    boot = grid[seeds, scenes].mean(axis=(1, 2))
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(grid.mean()), float(low), float(high), k, m)


def hierarchical_bootstrap(
    values: Mapping[int, Mapping[str, float]], reps: int = 10000, confidence: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile interval of the mean over seeds and test scenes (values: seed -> scene -> value).

    Both the training seeds and the test scenes are samples: another seed set or another draw of test scenes
    would give another mean. Each replicate resamples seeds and scenes with replacement, independently; as every
    seed is tested on the same scenes, one scene draw serves all drawn seeds (a scene's difficulty is shared by
    every run, so it must not average out over seeds). Only scenes that every seed has count; NaN without any.
    """
    return _bootstrap_grid(_grid(values), reps, confidence, seed)


def paired_hierarchical_bootstrap(
    arm: Mapping[int, Mapping[str, float]],
    baseline: Mapping[int, Mapping[str, float]],
    reps: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """The same bootstrap of the mean paired difference arm - baseline over common seeds and scenes: one draw
    applies to both arms (the mean being linear, it is the bootstrap of the per-(seed, scene) differences), so
    what the arms share per seed or per scene cancels."""
    diffs = {}
    for s in arm.keys() & baseline.keys():
        a, b = arm[s], baseline[s]
        diffs[s] = {c: a[c] - b[c] for c in a.keys() & b.keys() if _is_finite(a[c]) and _is_finite(b[c])}
    return _bootstrap_grid(_grid(diffs), reps, confidence, seed)


def variance_parts(values: Mapping[int, Mapping[str, float]]) -> tuple[float, float]:
    """(seed part, test-set part) of the variance of the mean over a k seeds x m scenes grid.

    Seed part: the sample variance of the k seed means / k; test-set part: the sample variance of the m scene
    means / m. Under a two-way random-effects model (seed, scene, their interaction) they estimate
    sd_seed^2 / k and sd_scene^2 / m, each plus the interaction's sd^2 / (k m). Only the test-set part shrinks with
    a larger test split. NaN with fewer than 2 seeds or 2 common scenes.
    """
    grid = _grid(values)
    k, m = grid.shape
    if k < 2 or m < 2:
        return math.nan, math.nan
    return float(grid.mean(axis=1).var(ddof=1)) / k, float(grid.mean(axis=0).var(ddof=1)) / m


def seeds_for_power(differences: Sequence[float], alpha: float, power: float = 0.8) -> float:
    """Paired seeds needed for the two-sided paired t-test to reach ``power`` at level ``alpha`` if the true
    effect were the observed one (effect size |mean| / sample std), rounded up and at least 2.

    NaN for fewer than 2 finite differences, a zero mean, or more than ``MAX_SEEDS``. With no spread (std 0,
    mean != 0) any two seeds already show the difference: 2.
    """
    d = _finite(differences)
    if d.size < 2 or d.mean() == 0:
        return math.nan
    std = float(d.std(ddof=1))
    if std == 0:
        return 2.0
    effect = abs(float(d.mean())) / std
    reached = TTestPower().power  # the smallest whole n that reaches it (statsmodels' solver fails on big effects)
    n = 2
    while reached(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided") < power:
        n += 1
        if n > MAX_SEEDS:
            return math.nan
    return float(n)


def probability_of_improvement(
    arm: Sequence[float],
    baseline: Sequence[float],
    higher_is_better: bool = True,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """P(X > Y) for X a run of the arm and Y one of the baseline, ties counting 1/2 (Mann-Whitney U / (n m)),
    with a percentile bootstrap interval resampling each arm's runs independently (the rliable summary; unlike
    a mean it is robust to a few outlying runs). For lower-is-better metrics X < Y is the improvement.
    """
    x, y = _finite(arm), _finite(baseline)
    if x.size == 0 or y.size == 0:
        return Interval(math.nan, math.nan, math.nan, int(x.size), 0)
    sign = 1.0 if higher_is_better else -1.0
    wins = (np.sign(sign * (x[:, None] - y[None, :])) + 1) / 2  # 1 win, 1/2 tie, 0 loss, for every pair
    rng = np.random.default_rng(seed)
    count_x = rng.multinomial(x.size, np.full(x.size, 1 / x.size), size=reps)  # how often each run is drawn
    count_y = rng.multinomial(y.size, np.full(y.size, 1 / y.size), size=reps)
    boot = np.einsum("ri,ij,rj->r", count_x, wins, count_y) / (x.size * y.size)
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(wins.mean()), float(low), float(high), int(x.size), 0)


def iqm(values: Sequence[float]) -> float:
    """Interquartile mean of the finite values (mean of the middle half, scipy.stats.trim_mean(x, 0.25)): less
    sensitive to outlying runs than the mean, more efficient than the median. NaN with fewer than 5 values."""
    x = _finite(values)
    if x.size < IQM_MIN_RUNS:
        return math.nan
    return float(stats.trim_mean(x, 0.25))
