"""The background-supervision contract on losses written here from their published formulas (issue 21)."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
import torch.nn.functional as F

from experiments.audit import main
from sparse4d_lab.supervision.contract import (
    CONTRACT_GROUPS,
    ContractError,
    assert_background_supervised,
    check,
)
from sparse4d_lab.supervision.schemes import build_scheme

C = 4


def _focal(pred, one_hot, alpha=0.25, gamma=2.0):
    p = pred.sigmoid()
    pt = (1 - p) * one_hot + p * (1 - one_hot)
    weight = (alpha * one_hot + (1 - alpha) * (1 - one_hot)) * pt.pow(gamma)
    return F.binary_cross_entropy_with_logits(pred, one_hot, reduction="none") * weight


def tao_filtered_focal(pred, target, weight=None, avg_factor=None):
    """TAO's formula: only rows with 0 <= t < C enter the loss, one-hot of the kept rows."""
    valid = (target >= 0) & (target < pred.shape[1])
    loss = _focal(pred[valid], F.one_hot(target[valid], pred.shape[1]).to(pred))
    if weight is not None:
        loss = loss * weight[valid].unsqueeze(-1)
    return loss.sum() / (avg_factor or 1.0)


def mmdet_onehot_focal(pred, target, weight=None, avg_factor=None):
    """mmdet: one-hot over C + 1, background column dropped (negative labels: all-zero rows, as its CUDA kernel)."""
    one_hot = (target.unsqueeze(-1) == torch.arange(pred.shape[1] + 1))[:, :-1].to(pred)
    loss = _focal(pred, one_hot)
    if weight is not None:
        loss = loss * weight.unsqueeze(-1)
    return loss.sum() / (avg_factor or 1.0)


def mmdet_python_focal(pred, target, weight=None, avg_factor=None):
    """mmdet's py_sigmoid_focal_loss: F.one_hot, which refuses negative labels."""
    one_hot = F.one_hot(target, pred.shape[1] + 1)[:, :-1].to(pred)
    return (_focal(pred, one_hot) * weight.unsqueeze(-1)).sum() / avg_factor


def vfl_clamped(pred, target_score, labels, weight=None, avg_factor=None, alpha=0.75, gamma=2.0):
    """RT-DETR's varifocal with background labels clamped to C - 1 before the one-hot."""
    one_hot = (labels.clamp(max=pred.shape[1] - 1).unsqueeze(-1) == torch.arange(pred.shape[1])).to(pred)
    w = alpha * pred.sigmoid().detach().pow(gamma) * (1 - one_hot) + target_score
    loss = F.binary_cross_entropy_with_logits(pred, target_score, weight=w, reduction="none")
    return (loss * (1 if weight is None else weight)).sum() / (avg_factor or 1.0)


def detr_ce(logits, target, eos_coef=0.1):
    """DETR: softmax cross-entropy over C + 1, no-object down-weighted."""
    weight = torch.ones(logits.shape[1], dtype=logits.dtype)
    weight[-1] = eos_coef
    return F.cross_entropy(logits, target, weight=weight)


def test_tao_filtered_focal_fails_on_every_unmatched_row():
    report = check(tao_filtered_focal, C)
    assert not report.ok and report.groups["unmatched"].rows > 0
    for group in ("unmatched", "dn_negative"):
        assert report.groups[group].with_gradient == 0.0 and report.groups[group].per_class == [0.0] * C
    assert report.groups["matched"].per_class_up == [1.0] * C
    assert report.groups["ignored"].with_gradient == 0.0  # weight 0 honoured
    assert report.verdict.startswith("unmatched queries receive no negative gradient on any class")


def test_mmdet_onehot_focal_and_detr_ce_pass():
    onehot = check(mmdet_onehot_focal, C)
    assert onehot.ok and onehot.verdict == "ok" and onehot.notes == []
    assert onehot.groups["unmatched"].per_class_down == [1.0] * C
    detr = check(detr_ce, C, "detr")
    assert detr.ok and detr.columns[-1] == "no_object"
    assert detr.groups["unmatched"].per_class_down[:C] == [1.0] * C and detr.groups["unmatched"].per_class_up[C] == 1.0
    assert detr.groups["ignored"].with_gradient == 0.0  # target -100 is cross_entropy's ignore_index
    assert_background_supervised(mmdet_onehot_focal, C)
    smoothed = torch.nn.CrossEntropyLoss(label_smoothing=0.1)  # its soft floor still pushes inflated rows down
    assert check(smoothed, 80, "detr").ok
    assert_background_supervised(detr_ce, C, convention="detr")


def test_varifocal_clamped_fails_on_the_last_column_only():
    report = check(vfl_clamped, C, "varifocal")
    assert [(f["group"], f["column"], f["no_gradient"]) for f in report.failures] == [("unmatched", "class 3", 1.0)]
    assert report.groups["unmatched"].per_class == [1.0, 1.0, 1.0, 0.0]
    assert report.verdict == "unmatched queries: class 3 gets none"


def test_assert_message_names_group_and_columns():
    with pytest.raises(AssertionError, match="unmatched queries: class 3 gets none"):
        assert_background_supervised(vfl_clamped, C, convention="varifocal")
    with pytest.raises(AssertionError) as caught:
        assert_background_supervised(tao_filtered_focal, C)
    assert "unmatched queries receive no negative gradient on any class" in str(caught.value)
    assert "dn_negative" in str(caught.value) and "class 0" in str(caught.value)


def test_a_loss_refusing_negative_labels_gets_a_clear_error():
    with pytest.raises(ContractError, match=r"mmdet convention .* refused the dn_negative rows \(target -1\)") as err:
        check(mmdet_python_focal, C)
    assert "--convention" in str(err.value) and "adapter" in str(err.value)

    # a loss with no ignore mechanism: the ignored rows leave the batch, the contract still runs
    def one_hot_ce(logits, target):  # probability targets: F.one_hot refuses the ignore index -100
        return F.cross_entropy(logits, F.one_hot(target, logits.shape[1]).to(logits))

    report = check(one_hot_ce, C, "detr")
    assert report.ok and report.groups["ignored"].rows == 0 and "ignored rows not tested" in report.notes[0]


def test_ignored_rows_with_gradient_are_a_note_not_a_failure():
    report = check(lambda pred, target, **_: mmdet_onehot_focal(pred, target), C)
    assert (
        report.ok and report.groups["ignored"].with_gradient == 1.0 and "ignored rows get a gradient" in report.notes[0]
    )


def test_the_projects_arms_agree():
    def arm(name):
        scheme = build_scheme(name, C)
        return lambda pred, target, avg_factor: scheme.loss(pred, target, avg_factor)

    assert not check(arm("focal_filtered"), C).ok and check(arm("focal_onehot"), C).ok
    patch = check(arm("focal_tao_patch"), C)
    assert {f["group"] for f in patch.failures} == {"dn_negative"}
    assert check(arm("detr_ce"), C, "detr").ok
    scheme = build_scheme("vfl_clamped", C)
    clamped = check(
        lambda pred, target_score, labels: scheme.loss(pred, labels, 1.0, target_score.amax(-1)), C, "varifocal"
    )
    assert clamped.verdict == "unmatched queries: class 3 gets none"


LOSS_FILE = """
import torch
import torch.nn.functional as F


def _focal(pred, one_hot):
    p = pred.sigmoid()
    pt = (1 - p) * one_hot + p * (1 - one_hot)
    return F.binary_cross_entropy_with_logits(pred, one_hot, reduction="none") * (0.75 - 0.5 * one_hot) * pt**2


def filtered(pred, target, weight=None, avg_factor=None):
    valid = (target >= 0) & (target < pred.shape[1])
    return _focal(pred[valid], F.one_hot(target[valid], pred.shape[1]).to(pred)).sum()


class OneHot(torch.nn.Module):
    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, pred, target, weight=None, avg_factor=None):
        one_hot = (target.unsqueeze(-1) == torch.arange(pred.shape[1] + 1))[:, :-1].to(pred)
        return self.scale * (_focal(pred, one_hot) * weight.unsqueeze(-1)).sum()
"""


def test_loss_file_cli(tmp_path, capsys):
    path = tmp_path / "my_loss.py"
    path.write_text(textwrap.dedent(LOSS_FILE))
    assert main(["--loss-file", f"{path}:filtered"]) == 1
    out = capsys.readouterr().out
    assert "verdict: unmatched queries receive no negative gradient on any class" in out
    assert main(["--loss-file", f"{path}:OneHot", "--init", '{"scale": 2.0}']) == 0
    assert capsys.readouterr().out.strip().endswith("verdict: ok")
    for bad in ([f"{path}:Missing"], [f"{tmp_path}/nope.py:filtered"], [f"{path}:OneHot", "--init", "{bad"]):
        assert main(["--loss-file", *bad]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert main(["--loss-fn", "no_such_package.module:loss"]) == 2
    with pytest.raises(SystemExit):
        main(["--arm", "focal_onehot", "--loss-file", f"{path}:filtered"])


def test_json_is_stable(tmp_path, capsys):
    path = tmp_path / "my_loss.py"
    path.write_text(textwrap.dedent(LOSS_FILE))
    outputs = []
    for _ in range(2):
        assert main(["--loss-file", f"{path}:filtered", "--json"]) == 1
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]
    data = json.loads(outputs[0])
    assert set(data) == {"loss", "convention", "num_classes", "columns", "call", "groups", "failures", "notes"} | {
        "verdict",
        "ok",
    }
    assert list(data["groups"]) == list(CONTRACT_GROUPS) and data["ok"] is False
    assert data["groups"]["unmatched"]["with_gradient"] == 0.0 and data["columns"] == [f"class {k}" for k in range(C)]
    assert {f["group"] for f in data["failures"]} == {"unmatched", "dn_negative"}


def test_loss_file_with_a_dataclass_and_a_sibling_import(tmp_path, capsys):
    (tmp_path / "helpers.py").write_text("import torch.nn.functional as F\nbce = F.binary_cross_entropy_with_logits\n")
    (tmp_path / "criterion.py").write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from dataclasses import dataclass
            import torch
            from helpers import bce

            @dataclass
            class Loss:
                scale: float = 1.0

                def __call__(self, pred, target, weight, avg_factor):
                    one_hot = (target.unsqueeze(-1) == torch.arange(pred.shape[1])).to(pred)
                    return self.scale * (bce(pred, one_hot, reduction="none") * weight[:, None]).sum() / avg_factor
            """
        )
    )
    assert main(["--loss-file", f"{tmp_path / 'criterion.py'}:Loss", "--init", '{"scale": 0.5}']) == 0
    assert "verdict: ok" in capsys.readouterr().out
