"""Background-supervision contract for anyone's classification loss: does it have TAO's unmatched-query hole?

TAO Toolkit's Sparse4D focal loss keeps only rows with ``0 <= target < C``, so unmatched queries (target ``C``) get
no negative loss and their scores inflate. ``check(loss_fn, num_classes, convention)`` builds one float64 batch from a
fixed generator (seed 0), calls the loss in a named calling convention, back-propagates and reports, per row group
and logit column, the share of rows with a non-zero gradient (``|grad| > 0`` exactly) and the way gradient descent
moves the logit (``down``: ``grad > 0``, the score falls; ``up``: ``grad < 0``).

Row groups (the audit's names) and what "supervised" means for each:

- ``matched``: a class ``k``; starts with a low score on ``k`` (below any IoU-like target), so its own column must
  be pushed ``up``. In the table, column ``k`` of this group covers the matched rows of class ``k`` only.
- ``unmatched`` (label ``C``) and ``dn_negative`` (denoising negatives, label ``-1``): they start with the bug's
  symptom (every class score high, no-object low) and must be supervised as background, i.e. every class column
  pushed ``down`` on every row; with a no-object column (``detr``, ``adapter_no_object``) that column must be
  pushed ``up`` as well. Zero gradient and the wrong sign both fail.
- ``ignored``: a class, marked ignored the convention's way (``weight`` 0, DETR target ``-100``); it should get no
  gradient. A gradient there is reported as a note, not a failure: it is over-supervision, not TAO's hole.
  A loss with no way to ignore a row (no ``weight`` parameter, refuses ``-100``) leaves the group untested.

Conventions (``CONVENTIONS``); optional keywords are passed only if the loss's signature declares them:

- ``mmdet``: ``loss(pred [N, C], target [N], weight=[N], avg_factor=)``, ``C`` = background, ``-1`` = dn negative.
- ``detr``: ``loss(logits [N, C + 1], target [N])``, softmax with ``C`` = no-object (dn negatives too, as DN-DETR),
  ignored rows ``-100`` (PyTorch's ``ignore_index``).
- ``varifocal``: ``loss(pred [N, C], target_score [N, C], weight=[N, C], avg_factor=, labels=[N])``; a matched row
  has its IoU-like score on its class, every other entry is 0; ``labels`` as in ``mmdet``.
- ``adapter`` / ``adapter_no_object``: the callable is ``adapter(logits, labels, num_classes) -> loss`` with logits
  ``[N, C]`` / ``[N, C + 1]`` and the ``mmdet`` labels; map them the way your criterion does.

A loss returning a tensor of per-element losses is summed. A loss that raises is called again group by group, so
the error names the group whose labels it refused.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

# The arm audit's group names (a denoising positive is a matched row to a loss), plus the rows a loss must ignore.
CONTRACT_GROUPS = ("matched", "unmatched", "dn_negative", "ignored")
NEGATIVES = ("unmatched", "dn_negative")
SIZES = {"unmatched": 12, "dn_negative": 6, "ignored": 4}  # matched: 2 rows per class


class ContractError(ValueError):
    """The loss could not be evaluated (it raised, or its result has no gradient): bad input, not a verdict."""


@dataclass(frozen=True)
class Batch:
    base: Tensor  # [N, C + 1] float64 logits, no grad; conventions take the columns they need
    labels: Tensor  # [N] 0..C-1 matched and ignored, C unmatched, -1 denoising negative
    score: Tensor  # [N] IoU-like score of matched and ignored rows, 0 elsewhere
    groups: dict[str, Tensor]  # bool masks [N]
    num_classes: int

    def select(self, rows: Tensor) -> Batch:
        """The batch restricted to ``rows`` (to find which group a loss refuses, or to drop ignored rows)."""
        groups = {k: m[rows] for k, m in self.groups.items()}
        return Batch(self.base[rows], self.labels[rows], self.score[rows], groups, self.num_classes)

    def keep_weight(self) -> Tensor:
        return (~self.groups["ignored"]).to(self.base)

    def avg_factor(self) -> float:
        return float(max(int(self.groups["matched"].sum()), 1))


def make_batch(num_classes: int, seed: int = 0) -> Batch:
    """Rows in group blocks. Matched rows start with a low score on their class, background rows with the
    bug's symptom (every class high, no-object low): a loss that supervises them must push the score back."""
    if num_classes < 1:
        raise ContractError(f"num_classes must be >= 1, got {num_classes}")
    gen = torch.Generator().manual_seed(seed)
    counts = {"matched": 2 * num_classes, **SIZES}
    n = sum(counts.values())
    kind = torch.cat([torch.full((c,), i) for i, c in enumerate(counts.values())])
    groups = {name: kind == i for i, name in enumerate(counts)}
    labels = torch.arange(n) % num_classes
    labels[groups["unmatched"]] = num_classes
    labels[groups["dn_negative"]] = -1
    base = 2 * torch.randn(n, num_classes + 1, generator=gen, dtype=torch.float64)
    own = torch.nonzero(groups["matched"]).squeeze(-1)
    base[own, labels[own]] = -base[own, labels[own]].abs() - 1  # sigmoid < 0.27 < 0.3, the lowest target score
    # Inflated, all alike (a softmax share above any label-smoothing floor): every class high, no-object low.
    negative = torch.nonzero(groups["unmatched"] | groups["dn_negative"]).squeeze(-1)
    spread = torch.rand(len(negative), num_classes + 1, generator=gen, dtype=torch.float64)
    base[negative] = (1.5 + spread) * torch.cat([torch.ones(num_classes), -torch.ones(1)]).to(base)
    score = 0.3 + 0.6 * torch.rand(n, generator=gen, dtype=torch.float64)
    score = score * (groups["matched"] | groups["ignored"])
    return Batch(base, labels, score, groups, num_classes)


def _accepts(fn: Callable, name: str) -> bool:
    """Whether the loss declares keyword ``name`` (or ``**kwargs``); for a Module, its ``forward``."""
    try:
        params = inspect.signature(fn.forward if isinstance(fn, torch.nn.Module) else fn).parameters
    except (TypeError, ValueError):  # no signature (builtins): offer everything
        return True
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _mmdet(batch: Batch, logits: Tensor) -> tuple[tuple, dict]:
    return (logits, batch.labels), {"weight": batch.keep_weight(), "avg_factor": batch.avg_factor()}


def _detr(batch: Batch, logits: Tensor) -> tuple[tuple, dict]:
    target = batch.labels.clone()
    target[batch.groups["dn_negative"]] = batch.num_classes
    target[batch.groups["ignored"]] = -100
    return (logits, target), {"avg_factor": batch.avg_factor()}


def _varifocal(batch: Batch, logits: Tensor) -> tuple[tuple, dict]:
    one_hot = (batch.labels.unsqueeze(-1) == torch.arange(batch.num_classes)).to(logits)  # all-zero for C and -1
    weight = batch.keep_weight().unsqueeze(-1).expand_as(logits)
    extra = {"weight": weight, "avg_factor": batch.avg_factor(), "labels": batch.labels}
    return (logits, one_hot * batch.score.unsqueeze(-1)), extra


def _adapter(batch: Batch, logits: Tensor) -> tuple[tuple, dict]:
    return (logits, batch.labels, batch.num_classes), {"weight": batch.keep_weight(), "avg_factor": batch.avg_factor()}


@dataclass(frozen=True)
class Convention:
    build: Callable[[Batch, Tensor], tuple[tuple, dict]]  # (batch, logits) -> positional args, optional keywords
    no_object: bool  # the last logit column is a no-object class (softmax)
    labels: dict[str, str]  # what each row group's target is, for messages
    ignore_by_weight: bool = True  # ignored rows are marked by weight 0 (else by their target)


MMDET_LABELS = {"matched": "0..C-1", "unmatched": "C", "dn_negative": "-1", "ignored": "a class with weight 0"}
VFL_LABELS = {"matched": "score on its class", "unmatched": "zero scores (label C)"}
CONVENTIONS = {
    "mmdet": Convention(_mmdet, False, MMDET_LABELS),
    "detr": Convention(_detr, True, {**MMDET_LABELS, "dn_negative": "C", "ignored": "-100"}, False),
    "varifocal": Convention(_varifocal, False, {**MMDET_LABELS, **VFL_LABELS, "dn_negative": "zero scores (label -1)"}),
    "adapter": Convention(_adapter, False, MMDET_LABELS),
    "adapter_no_object": Convention(_adapter, True, MMDET_LABELS),
}


def _invoke(fn: Callable, conv: Convention, batch: Batch) -> tuple[Tensor, Tensor, Batch, list[str]]:
    """One call of the loss: (loss, the logits whose grad is inspected, the rows used, the keywords passed). A loss
    with no ``weight`` cannot be told to ignore a row, so the ignored rows leave the batch."""
    if conv.ignore_by_weight and not _accepts(fn, "weight"):
        batch = batch.select(~batch.groups["ignored"])
    logits = batch.base[:, : batch.num_classes + conv.no_object].clone().requires_grad_()
    args, offered = conv.build(batch, logits)
    kw = {k: v for k, v in offered.items() if _accepts(fn, k)}
    return fn(*args, **kw), logits, batch, list(kw)


@dataclass
class ContractGroup:
    rows: int
    with_gradient: float | None  # share of rows with a non-zero gradient on any column (None: group not tested)
    per_class: list[float | None]  # share with a non-zero gradient per column
    per_class_down: list[float | None]  # share whose gradient is > 0 (descent lowers the logit)
    per_class_up: list[float | None]  # share whose gradient is < 0


@dataclass
class ContractReport:
    loss: str
    convention: str
    num_classes: int
    columns: list[str]
    call: str
    groups: dict[str, ContractGroup]
    failures: list[dict] = field(default_factory=list)  # {group, column, no_gradient, wrong_sign} shares
    notes: list[str] = field(default_factory=list)
    verdict: str = "ok"

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ok": self.ok})


def _share(x: Tensor) -> float | None:
    return round(x.double().mean().item(), 4) if x.numel() else None


def _wanted(group: str, column: int, num_classes: int) -> int:
    """Required sign of the gradient: -1 (pushed up), +1 (pushed down), 0 (not part of the contract)."""
    if group == "matched":
        return -1 if column < num_classes else 0
    if group in NEGATIVES:
        return 1 if column < num_classes else -1
    return 0


def _problem(failure: dict) -> str:
    if failure["wrong_sign"]:
        return "is pushed the wrong way"
    return "gets none" if failure["no_gradient"] == 1 else f"gets none on {failure['no_gradient']:.0%} of rows"


def _verdict(failures: list[dict], num_classes: int, num_columns: int) -> str:
    """One line: per failing group, which columns get nothing (or the wrong sign); "ok" if none fails."""
    parts = []
    for group in CONTRACT_GROUPS:
        by_problem: dict[str, list[str]] = {}
        for f in (f for f in failures if f["group"] == group):
            by_problem.setdefault(_problem(f), []).append(f["column"])
        want, total = ("positive", num_classes) if group == "matched" else ("negative", num_columns)
        if len(by_problem.get("gets none", [])) == total > 1:
            parts.append(f"{group} queries receive no {want} gradient on any class")
            continue
        for problem, cols in by_problem.items():
            plural = problem.replace("gets", "get").replace("is ", "are ") if len(cols) > 1 else problem
            parts.append(f"{group} queries: {', '.join(cols)} {plural}")
    return "; ".join(parts) or "ok"


def _refused(fn: Callable, conv: Convention, batch: Batch) -> str | None:
    """The first group whose rows, with the matched ones, make the loss raise (None: only the whole batch does)."""
    for group in CONTRACT_GROUPS:
        try:
            _invoke(fn, conv, batch.select(batch.groups["matched"] | batch.groups[group]))
        except Exception:
            return group
    return None


def _run(fn: Callable, name: str, batch: Batch, notes: list[str]) -> tuple[Tensor, Tensor, Batch, list[str]]:
    """Call the loss; if it raises, name the group whose labels it refuses. Refused ignored rows only leave the
    batch, with a note: ignoring is information, not the contract."""
    conv = CONVENTIONS[name]
    try:
        return _invoke(fn, conv, batch)
    except Exception as error:
        refused = _refused(fn, conv, batch)
        if refused == "ignored":
            notes.append(f"ignored rows not tested: the loss refuses their target ({conv.labels['ignored']})")
            return _run(fn, name, batch.select(~batch.groups["ignored"]), notes)
        where = f"the {refused} rows (target {conv.labels[refused]})" if refused else "the full batch"
        others = ", ".join(c for c in CONVENTIONS if c != name)
        fix = f"try another --convention ({others}), or an adapter that maps the labels as your criterion does"
        if refused == "matched":
            fix = f"check that the loss takes this convention's shapes and float64 logits, or {fix}"
        message = " ".join(f"{type(error).__name__}: {error}".split())[:200]
        raise ContractError(f"in the {name} convention the loss refused {where}: {message}; fix: {fix}") from error


def _group(grad: Tensor, batch: Batch, group: str, columns: list[str]) -> tuple[ContractGroup, list[dict]]:
    """One group's statistics, and its failures: columns where some row is not moved the required way."""
    rows = batch.groups[group]
    cells = [grad[rows, k] for k in range(grad.shape[1])]
    if group == "matched":  # a matched row's own class column
        cells[: batch.num_classes] = [grad[rows & (batch.labels == k), k] for k in range(batch.num_classes)]
    stats = ContractGroup(
        int(rows.sum()),
        _share((grad[rows] != 0).any(-1)),
        [_share(c != 0) for c in cells],
        [_share(c > 0) for c in cells],
        [_share(c < 0) for c in cells],
    )
    failures = []
    for k, c in enumerate(cells):
        want = _wanted(group, k, batch.num_classes)
        if want and len(c) and not (c * want > 0).all():
            failures.append(
                {
                    "group": group,
                    "column": columns[k],
                    "no_gradient": _share(c == 0),
                    "wrong_sign": _share(c * want < 0),
                }
            )
    return stats, failures


def check(
    loss_fn: Callable, num_classes: int, convention: str = "mmdet", seed: int = 0, name: str = ""
) -> ContractReport:
    """Gradient reach of ``loss_fn`` on one deterministic batch, and whether background rows are supervised."""
    if convention not in CONVENTIONS:
        raise ContractError(f"unknown convention {convention!r}; valid: {', '.join(CONVENTIONS)}")
    conv, notes = CONVENTIONS[convention], []
    loss, logits, batch, passed = _run(loss_fn, convention, make_batch(num_classes, seed), notes)
    if not isinstance(loss, Tensor) or not loss.requires_grad:
        raise ContractError(f"in the {convention} convention the loss returned no tensor with a gradient to the logits")
    try:
        loss.sum().backward()  # a loss with reduction "none": the sum has the same gradient signs
    except RuntimeError as error:
        raise ContractError(f"in the {convention} convention backward() failed: {error}") from error
    grad = logits.grad if logits.grad is not None else torch.zeros_like(logits)
    if not torch.isfinite(grad).all():
        raise ContractError(f"in the {convention} convention the loss gives a non-finite gradient")
    columns = [f"class {k}" for k in range(num_classes)] + ["no_object"] * conv.no_object
    targets = ", ".join(f"{g} {conv.labels[g]}" for g in CONTRACT_GROUPS)
    call = f"{convention} convention, keywords passed: {', '.join(passed) or 'none'}; targets: {targets}"
    loss_name = name or getattr(loss_fn, "__name__", type(loss_fn).__name__)
    report = ContractReport(loss_name, convention, num_classes, columns, call, {}, [], notes)
    for group in CONTRACT_GROUPS:
        report.groups[group], failures = _group(grad, batch, group, columns)
        report.failures += failures
    moved = [columns[k] for k, v in enumerate(report.groups["ignored"].per_class) if v]
    if moved:
        notes.append(f"ignored rows get a gradient on {', '.join(moved)} (information, not a contract failure)")
    elif report.groups["ignored"].rows == 0 and not notes:
        notes.append("ignored rows not tested: the loss takes no weight")
    report.verdict = _verdict(report.failures, num_classes, len(columns))
    return report


def render_table(
    title: str, lead: list[tuple[str, int]], columns: list[str], rows: dict[str, tuple[list[str], list[str]]]
) -> str:
    """The one-screen table both the arm audit (``python -m experiments.audit``) and the loss contract print: a
    title, then one line per group with its leading cells (``lead`` names them and gives their widths) and one cell
    per logit column."""
    header = " ".join([f"{'group':<12}", *(f"{n:>{w}}" for n, w in lead)])
    lines = [title, header + "  " + "  ".join(f"{n[:12]:>12}" for n in columns)]
    for group, (first, cells) in rows.items():
        line = " ".join([f"{group:<12}", *(f"{c:>{w}}" for c, (_, w) in zip(first, lead, strict=True))])
        lines.append(line + "  " + "  ".join(f"{c:>12}" for c in cells))
    return "\n".join(lines)


def render_contract(report: ContractReport) -> str:
    """The arm audit's table, with the direction of each column's gradient, then the verdict and notes."""
    title = (
        f"loss {report.loss}, convention {report.convention}: share of rows whose logits get a non-zero gradient "
        "(any column, each column; matched: its own class) and which way descent moves the score"
    )

    def cell(share: float | None, down: float | None, up: float | None) -> str:
        if share is None:
            return "-"
        way = "" if not share else "down" if down == share else "up" if up == share else "mixed"
        return f"{share:.2f} {way}".strip()

    rows = {
        g: (
            [str(r.rows), "-" if r.with_gradient is None else f"{r.with_gradient:.2f}"],
            [cell(*v) for v in zip(r.per_class, r.per_class_down, r.per_class_up, strict=True)],
        )
        for g, r in report.groups.items()
    }
    table = render_table(title, [("rows", 7), ("any", 6)], report.columns, rows)
    return "\n".join(
        [table, f"call: {report.call}", *(f"note: {n}" for n in report.notes), f"verdict: {report.verdict}"]
    )


def assert_background_supervised(loss_fn: Callable, num_classes: int, convention: str = "mmdet", seed: int = 0) -> None:
    """For users' test suites: fails, naming the row groups and columns, if any background row goes unsupervised."""
    report = check(loss_fn, num_classes, convention, seed)
    if not report.ok:
        raise AssertionError(f"{report.loss} ({convention}): {report.verdict}\n{render_contract(report)}")
