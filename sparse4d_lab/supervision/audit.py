"""Supervision audit: which queries' classification logits actually receive a gradient under an arm.

``python -m sparse4d_lab.supervision.audit --arm focal_filtered [--semantics tao|upstream] [--json]`` runs one
training batch of the synthetic warehouse through a Sparse4D model and the arm's criterion under a semantics
profile's rules, back-propagates the loss, and reports per query group (matched, unmatched, denoising positive,
denoising negative) the share of queries whose logits get a non-zero gradient, overall and per class column. It
shows in one screen what no loss curve shows: ``focal_filtered`` gives unmatched queries nothing, ``vfl_clamped``
gives the last class nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data import CLASSES, SequenceDataset, WarehouseConfig, collate, load_split
from ..model.config import ModelConfig, tiny
from ..model.sparse4d import Sparse4D
from ..semantics import SEMANTICS, profile
from .criterion import Sparse4DCriterion
from .schemes import REGISTRY, build_scheme

GROUPS = ("matched", "unmatched", "dn_positive", "dn_negative")
AUDIT_DATA = WarehouseConfig(
    scenes={"train": 1, "val": 0, "test": 0},
    frames_per_scene=2,
    image_size=(96, 64),
    num_cameras=2,
    objects_per_scene=(3, 5),
)


@dataclass
class GroupReport:
    queries: int
    with_gradient: float  # share of the group's queries whose logits get any non-zero gradient
    per_class: list[float]  # share with a non-zero gradient in each logit column
    # share of the group's last-layer queries whose refined box gets a gradient (box, centerness or yawness loss):
    # cls_threshold_to_reg withholds it from positives whose class score is still low
    with_box_gradient: float


def _group_report(
    grads: list[Tensor], masks: list[Tensor], num_logits: int, box_grad: Tensor | None = None
) -> GroupReport:
    rows = torch.cat([g[m] for g, m in zip(grads, masks, strict=True)]) if grads else torch.zeros(0, num_logits)
    if len(rows) == 0:
        return GroupReport(0, float("nan"), [float("nan")] * num_logits, float("nan"))
    nonzero = rows != 0
    box = float("nan") if box_grad is None else (box_grad[masks[-1]] != 0).any(-1).float().mean().item()
    return GroupReport(len(rows), nonzero.any(-1).float().mean().item(), nonzero.float().mean(0).tolist(), box)


def audit(
    arm: str, model_config: ModelConfig | None = None, seed: int = 0, cache_dir=None, semantics: str = "tao"
) -> dict[str, GroupReport]:
    """Gradient reach of ``arm``'s classification loss on one batch, per query group, over every decoder layer,
    with the training rules of the ``semantics`` profile."""
    torch.manual_seed(seed)
    rules = profile(semantics)
    scheme = build_scheme(arm, len(CLASSES))
    data = SequenceDataset(load_split(AUDIT_DATA, "train", cache_dir))
    batch = collate([data[i] for i in range(min(2, len(data)))])
    config = dataclasses.replace(model_config or tiny(), **rules["model"])
    model = Sparse4D(config, len(CLASSES), scheme.num_logits, scheme.scores).train()
    output = model(batch)
    criterion = Sparse4DCriterion(scheme, **rules["criterion"])
    layers = [*output.layers, *(output.denoising.layers if output.denoising is not None else [])]
    for layer in layers:
        layer.cls.retain_grad()
        layer.anchor.retain_grad()
    result = criterion(output, batch["gt_boxes"], batch["gt_labels"], batch["gt_ids"])
    result.total.backward()

    normal = [layer.cls.grad for layer in output.layers]
    matched = [
        criterion.assign(layer, batch["gt_boxes"], batch["gt_labels"], False).positive for layer in output.layers
    ]
    report = {
        "matched": _group_report(normal, matched, scheme.num_logits, output.layers[-1].anchor.grad),
        "unmatched": _group_report(normal, [~m for m in matched], scheme.num_logits, output.layers[-1].anchor.grad),
    }
    dn = output.denoising
    dn_grads = [layer.cls.grad for layer in dn.layers] if dn is not None else []
    for name, mask in (("dn_positive", "positive"), ("dn_negative", "negative")):
        if dn is None:
            report[name] = _group_report([], [], scheme.num_logits)
            continue
        chosen = dn.valid & (dn.positive if mask == "positive" else ~dn.positive)
        report[name] = _group_report(dn_grads, [chosen] * len(dn_grads), scheme.num_logits, dn.layers[-1].anchor.grad)
    return report


def render(arm: str, report: dict[str, GroupReport], semantics: str = "tao") -> str:
    """A plain-text table: one row per group, the overall share and one column per logit."""
    names = list(CLASSES) + (["no_object"] if len(next(iter(report.values())).per_class) > len(CLASSES) else [])
    header = f"{'group':<12} {'queries':>7} {'box':>6} {'any':>6}  " + "  ".join(f"{n[:12]:>12}" for n in names)
    title = (
        f"arm {arm}, semantics {semantics}: share of queries whose classification logits get a non-zero gradient "
        "(any class, each class), and whose last-layer box does (box)"
    )
    lines = [title, header]
    for group in GROUPS:
        r = report[group]
        cells = "  ".join(f"{v:>12.2f}" for v in r.per_class)
        lines.append(f"{group:<12} {r.queries:>7} {r.with_box_gradient:>6.2f} {r.with_gradient:>6.2f}  {cells}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sparse4d_lab.supervision.audit", description=__doc__)
    parser.add_argument("--arm", required=True, choices=sorted(REGISTRY))
    parser.add_argument("--semantics", default="tao", choices=list(SEMANTICS), help="training rules (default tao)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    report = audit(args.arm, seed=args.seed, cache_dir=args.cache_dir, semantics=args.semantics)
    if args.json:
        print(json.dumps({"arm": args.arm, "semantics": args.semantics, **{k: vars(v) for k, v in report.items()}}))
    else:
        print(render(args.arm, report, args.semantics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
