"""Query utilisation: activation counts, Gini coefficient and Lorenz curve."""

from __future__ import annotations

import numpy as np
import pytest

from sparse4d_lab.eval import EvalInputError, gini, lorenz_curve, query_utilisation, slot_activation


def test_gini_extremes() -> None:
    assert gini([3, 3, 3, 3]) == 0.0
    assert gini([0, 0, 0, 8]) == pytest.approx(3 / 4)  # (n - 1) / n when one slot does everything
    assert gini([0, 0, 0, 0]) == 0.0


def test_gini_equals_mean_absolute_difference_over_twice_the_mean() -> None:
    x = np.random.default_rng(0).integers(0, 50, 200).astype(float)
    mad = np.abs(x[:, None] - x[None, :]).mean()
    assert gini(x) == pytest.approx(mad / (2 * x.mean()))


def test_lorenz_curve_ends() -> None:
    population, share = lorenz_curve([0, 1, 3])
    assert population.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert share.tolist() == pytest.approx([0, 0, 0.25, 1])


def test_activation_from_masks_indices_and_lists() -> None:
    mask = np.array([[1, 0, 0, 1], [1, 0, 1, 0], [1, 0, 0, 0]], bool)
    assert slot_activation(mask).tolist() == [3, 0, 1, 1]
    assert slot_activation([np.array([0, 3]), np.array([0, 2]), np.array([0])], 4).tolist() == [3, 0, 1, 1]
    assert slot_activation(np.array([0, 3, 0, 2, 0]), 4).tolist() == [3, 0, 1, 1]
    with pytest.raises(EvalInputError):
        slot_activation(np.array([0, 5]), 4)
    with pytest.raises(EvalInputError):
        slot_activation([np.array([0])])


def test_query_utilisation_report() -> None:
    matched = np.zeros((10, 20), bool)
    matched[:, 0] = True
    matched[::2, 1] = True
    survived = matched.copy()
    survived[:, 2] = True
    report = query_utilisation(matched, survived=survived)
    m = report["matched"]
    assert m["num_slots"] == 20 and m["activations"] == 15 and m["num_frames"] == 10
    assert m["idle_share"] == pytest.approx(18 / 20)
    assert m["top10_share"] == pytest.approx(1.0)  # the two busiest slots take everything
    assert m["gini"] == pytest.approx(gini(m["counts"]))
    assert m["lorenz"]["activations"][0] == 0 and m["lorenz"]["activations"][-1] == pytest.approx(1)
    assert report["survived"]["activations"] == 25 and report["survived"]["gini"] < m["gini"]


def test_accepts_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, 1] = True
    assert query_utilisation(mask)["matched"]["counts"] == [0, 4, 0, 0, 0, 0]
