"""Supervision audit: which queries' classification logits actually receive a gradient under an arm.

``python -m experiments.audit --arm focal_filtered [--semantics tao|upstream] [--json]`` runs one
training batch of the synthetic warehouse through a Sparse4D model and the arm's criterion under a semantics
profile's rules, back-propagates the loss, and reports per query group (matched, unmatched, denoising positive,
denoising negative) the share of queries whose logits get a non-zero gradient, overall and per class column. It
shows in one screen what no loss curve shows: ``focal_filtered`` gives unmatched queries nothing, ``vfl_clamped``
gives the last class nothing.

``python -m experiments.audit --loss-fn package.module:Name [--init JSON] [--convention mmdet]`` (or
``--loss-file path/to/file.py:Name``) checks your own classification loss instead: does it supervise unmatched
queries and denoising negatives as background (``sparse4d_lab.supervision.contract``)? Exit code 0 ok, 1 the
contract fails, 2 bad input. Loading a loss runs its code: importing a module runs its import-time code, and
``--loss-file`` executes the file, so point them only at code you trust.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import reduce
from pathlib import Path

import torch
from torch import Tensor

from sparse4d_lab.data import CLASSES, SequenceDataset, WarehouseConfig, collate, load_split
from sparse4d_lab.model.config import ModelConfig, tiny
from sparse4d_lab.model.sparse4d import Sparse4D
from sparse4d_lab.semantics import SEMANTICS, profile
from sparse4d_lab.supervision.contract import CONVENTIONS, ContractError, check, render_contract, render_table
from sparse4d_lab.supervision.criterion import Sparse4DCriterion
from sparse4d_lab.supervision.schemes import REGISTRY, build_scheme

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
    title = (
        f"arm {arm}, semantics {semantics}: share of queries whose classification logits get a non-zero gradient "
        "(any class, each class), and whose last-layer box does (box)"
    )
    rows = {
        group: (
            [str(r.queries), f"{r.with_box_gradient:.2f}", f"{r.with_gradient:.2f}"],
            [f"{v:.2f}" for v in r.per_class],
        )
        for group, r in ((g, report[g]) for g in GROUPS)
    }
    return render_table(title, [("queries", 7), ("box", 6), ("any", 6)], names, rows)


class LoadError(ValueError):
    """A loss named on the command line cannot be loaded."""


def load_loss(spec: str, from_file: bool = False, init: dict | None = None) -> Callable:
    """``package.module:Name`` (imported) or ``path/file.py:Name`` (executed: this runs the file's code);
    a class is instantiated with ``init``."""
    where, sep, attr = spec.rpartition(":")
    if not sep or not where or not attr:
        raise LoadError(f"expected {'path/file.py' if from_file else 'package.module'}:Name, got {spec!r}")
    try:
        module = _load_module(where) if from_file else importlib.import_module(where)
    except LoadError:
        raise
    except Exception as error:
        raise LoadError(f"loading {where} failed: {type(error).__name__}: {error}") from error
    try:
        target = reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise LoadError(f"{where} has no attribute {attr!r}") from None
    if init is not None and not inspect.isclass(target):
        raise LoadError(f"--init given but {attr} is not a class")
    if inspect.isclass(target):
        try:
            target = target(**(init or {}))
        except Exception as error:
            raise LoadError(f"{attr}(**{init or {}}) failed: {type(error).__name__}: {error}") from error
    if not callable(target):
        raise LoadError(f"{attr} is not callable")
    return target


def _load_module(where: str):
    """Execute a file outside any package as a module (this runs its code); its folder is importable meanwhile."""
    path = Path(where).resolve()
    if not path.is_file():
        raise LoadError(f"no such file: {where}")
    module_spec = importlib.util.spec_from_file_location(f"_contract_{path.stem}", path)
    if module_spec is None or module_spec.loader is None:
        raise LoadError(f"cannot load {where} as Python source")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # as importlib's recipe: dataclasses and pickling look the module up
    sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_spec.name]
        raise
    finally:
        sys.path.remove(str(path.parent))
    return module


def _contract_main(args: argparse.Namespace) -> int:
    """``--loss-fn`` / ``--loss-file``: the background-supervision contract on a user's loss; 0 ok, 1 failed, 2 bad
    input (one line on stderr)."""
    spec = args.loss_fn or args.loss_file
    try:
        try:
            init = None if args.init is None else json.loads(args.init)
        except json.JSONDecodeError as error:
            raise LoadError(f"--init is not valid JSON ({error}): {args.init!r}") from None
        if init is not None and not isinstance(init, dict):
            raise LoadError(f"--init must be a JSON object, got {args.init!r}")
        loss_fn = load_loss(spec, from_file=args.loss_file is not None, init=init)
        report = check(loss_fn, args.num_classes, args.convention, args.seed, name=spec.rpartition(":")[2])
    except (ContractError, LoadError) as error:
        print(f"audit: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    print(report.to_json() if args.json else render_contract(report))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.audit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--arm", choices=sorted(REGISTRY))
    target.add_argument(
        "--loss-fn",
        metavar="package.module:Name",
        help="check your own classification loss: import it (this runs the module's import-time code)",
    )
    target.add_argument(
        "--loss-file",
        metavar="path/to/file.py:Name",
        help="check a loss defined in a file outside any package; WARNING: this executes the file's code",
    )
    parser.add_argument("--init", metavar="JSON", help="keyword arguments if Name is a class, e.g. '{\"gamma\": 2.0}'")
    parser.add_argument(
        "--convention",
        default="mmdet",
        choices=list(CONVENTIONS),
        help="how the loss is called (default mmdet): mmdet loss(pred [N, C], target [N]) with C = background; detr "
        "softmax over C + 1 with C = no-object; varifocal loss(pred, target_score [N, C]); adapter / "
        "adapter_no_object: Name is adapter(logits [N, C or C + 1], labels, num_classes) -> loss (see "
        "sparse4d_lab.supervision.contract)",
    )
    parser.add_argument("--num-classes", type=int, default=len(CLASSES), help="C for --loss-fn/--loss-file")
    parser.add_argument("--semantics", default="tao", choices=list(SEMANTICS), help="training rules (default tao)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    if args.arm is not None and args.init is not None:
        parser.error("--init is for --loss-fn / --loss-file")
    if args.arm is None:
        return _contract_main(args)
    report = audit(args.arm, seed=args.seed, cache_dir=args.cache_dir, semantics=args.semantics)
    if args.json:
        print(json.dumps({"arm": args.arm, "semantics": args.semantics, **{k: vars(v) for k, v in report.items()}}))
    else:
        print(render(args.arm, report, args.semantics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
