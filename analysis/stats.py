"""Statistics of a comparison over seeds: mean +- std per arm, and paired differences to the baseline.

Seeds pair the runs: arm and baseline with the same seed saw the same data order and initialisation, so the
difference per seed removes that shared noise. The difference is tested with a two-sided paired t-test
(``scipy.stats.ttest_rel``) and its 95 % confidence interval is the t interval of the mean paired difference
(n - 1 degrees of freedom). With fewer than two pairs both are undefined (NaN, shown as "n/a"). When every
paired difference is the same, the t statistic is 0/0 or +-inf; the test's limits are used: p = 1 when the
differences are all zero (identical arms), p = 0 otherwise, and the interval shrinks to that difference.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
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
