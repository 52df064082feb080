"""A sweep's declaration (``sweeps/conf/sweep/*.yaml``), checked before any work: the search space over experiment
config keys, the objectives, the fixed overrides and the pruner. Every error names the key and the fix."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from experiments.job_run import NOT_IDENTITY
from sparse4d_lab.errors import ConfigError
from sparse4d_lab.eval.keys import metric_names

DIRECTIONS = ("maximize", "minimize")
FIELDS = {
    "float": {"type", "low", "high", "log", "step", "when"},
    "int": {"type", "low", "high", "log", "step", "when"},
    "categorical": {"type", "choices", "when"},
}
Scalar = str | int | float | bool | None


def hydra_value(value: Scalar) -> str:
    """A suggested value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _top_key(override: str) -> str:
    """``+paths.root=/x`` -> ``paths``."""
    return override.lstrip("+~").split("=", 1)[0].split(".", 1)[0]


def _number(key: str, value: Any, integer: bool) -> int | float:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if not ok or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{key}: expected {'an integer' if integer else 'a number'}, got {value!r}")
    return value


@dataclass(frozen=True)
class Param:
    """One knob: ``name`` is an experiment config key (``optim.lr``) or config group (``loss``); ``when`` makes it
    conditional on earlier categorical knobs (``{loss: detr_ce}``): it is drawn only when they took those values."""

    name: str
    kind: str
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: tuple[Scalar, ...] = ()
    when: dict[str, tuple[Scalar, ...]] = field(default_factory=dict)

    @classmethod
    def parse(cls, name: str, node: Any, earlier: dict[str, Param]) -> Param:
        key = f"sweep.params.{name}"
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: expected a mapping such as {{type: float, low: 0.1, high: 0.5}}, got {node!r}")
        kind = node.get("type")
        if kind not in FIELDS:
            raise ConfigError(f"{key}.type: {kind!r} is not a parameter type; valid: {', '.join(FIELDS)}")
        unknown = set(node) - FIELDS[kind]
        if unknown:
            raise ConfigError(f"{key}: {sorted(unknown)} not valid for type {kind}; valid: {sorted(FIELDS[kind])}")
        when = cls._parse_when(key, node.get("when") or {}, earlier)
        if kind == "categorical":
            choices = node.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{key}.choices: expected a non-empty list, got {choices!r}")
            if any(not isinstance(c, Scalar) for c in choices) or len({repr(c) for c in choices}) < len(choices):
                raise ConfigError(f"{key}.choices: expected distinct scalars (str, number, bool, null), got {choices}")
            return cls(name, kind, choices=tuple(choices), when=when)
        integer = kind == "int"
        if "low" not in node or "high" not in node:
            raise ConfigError(f"{key}: type {kind} needs low and high")
        low, high = _number(f"{key}.low", node["low"], integer), _number(f"{key}.high", node["high"], integer)
        log, step = node.get("log", False), node.get("step")
        if not isinstance(log, bool):
            raise ConfigError(f"{key}.log: expected true or false, got {log!r}")
        if low > high:
            raise ConfigError(f"{key}: low ({low}) must not exceed high ({high})")
        if log and low <= 0:
            raise ConfigError(f"{key}: log scale needs low > 0, got {low}")
        if step is not None:
            step = _number(f"{key}.step", step, integer)
            if log or step <= 0:
                raise ConfigError(f"{key}.step: must be > 0 and cannot be combined with log: true")
        return cls(name, kind, low, high, log, step, when=when)

    @staticmethod
    def _parse_when(key: str, when: Any, earlier: dict[str, Param]) -> dict[str, tuple[Scalar, ...]]:
        if not isinstance(when, dict):
            raise ConfigError(f"{key}.when: expected a mapping such as {{loss: detr_ce}}, got {when!r}")
        parsed = {}
        for other, values in when.items():
            values = tuple(values) if isinstance(values, list) else (values,)
            source = earlier.get(other)
            if source is None or source.kind != "categorical":
                raise ConfigError(
                    f"{key}.when.{other}: conditions name a categorical parameter declared above this one; "
                    f"declared above: {sorted(n for n, p in earlier.items() if p.kind == 'categorical') or 'none'}"
                )
            bad = [v for v in values if v not in source.choices]
            if bad:
                raise ConfigError(f"{key}.when.{other}: {bad} not among its choices {list(source.choices)}")
            parsed[other] = values
        return parsed

    def active(self, drawn: dict[str, Scalar]) -> bool:
        return all(other in drawn and drawn[other] in values for other, values in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Scalar:
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log, step=self.step or 1)
        return trial.suggest_categorical(self.name, list(self.choices))


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str

    @property
    def key(self) -> str:
        """Objectives are validation metrics: the test split stays untouched for the A/B that follows."""
        return f"val/{self.metric}"


@dataclass(frozen=True)
class SweepSpec:
    name: str
    fixed: tuple[str, ...]
    params: tuple[Param, ...]
    objectives: tuple[Objective, ...]
    pruner: dict[str, Any] | None

    @classmethod
    def parse(cls, node: DictConfig) -> SweepSpec:
        spec = OmegaConf.to_container(node, resolve=True)
        allowed = {"name", "fixed", "params", "objectives", "pruner"}
        if set(spec) - allowed:
            raise ConfigError(f"sweep: {sorted(set(spec) - allowed)} are not sweep keys; valid: {sorted(allowed)}")
        name, fixed, params, objectives = (
            spec.get("name"),
            spec.get("fixed") or [],
            spec.get("params"),
            spec.get("objectives"),
        )
        if not isinstance(name, str) or not name:
            raise ConfigError(f"sweep.name: expected the sweep's name (the default study name), got {name!r}")
        if not isinstance(fixed, list) or not all(isinstance(o, str) for o in fixed):
            raise ConfigError(f"sweep.fixed: expected a list of experiment overrides like [loss=detr_ce], got {fixed}")
        if not isinstance(params, dict) or not params:
            raise ConfigError(
                "sweep.params: declare at least one knob, e.g. optim.lr: {type: float, low: ..., high: ...}"
            )
        parsed: dict[str, Param] = {}
        for knob, param in params.items():
            parsed[knob] = Param.parse(knob, param, parsed)
        pruner = spec.get("pruner")
        if pruner is not None and not (isinstance(pruner, dict) and "_target_" in pruner):
            raise ConfigError(
                f"sweep.pruner: expected null or {{_target_: optuna.pruners.MedianPruner, ...}}, got {pruner}"
            )
        return cls(name, tuple(fixed), tuple(parsed.values()), cls._objectives(objectives), pruner)

    @staticmethod
    def _objectives(objectives: Any) -> tuple[Objective, ...]:
        example = "[{metric: mAP, direction: maximize}]"
        if not isinstance(objectives, list) or not objectives:
            raise ConfigError(f"sweep.objectives: expected a non-empty list such as {example}, got {objectives!r}")
        parsed = []
        for i, objective in enumerate(objectives):
            if not isinstance(objective, dict) or set(objective) != {"metric", "direction"}:
                raise ConfigError(f"sweep.objectives[{i}]: expected {{metric: NAME, direction: maximize|minimize}}")
            if objective["direction"] not in DIRECTIONS:
                raise ConfigError(f"sweep.objectives[{i}].direction: {objective['direction']!r}; valid: {DIRECTIONS}")
            parsed.append(Objective(str(objective["metric"]), objective["direction"]))
        if len({o.metric for o in parsed}) < len(parsed):
            raise ConfigError(f"sweep.objectives: a metric appears twice in {[o.metric for o in parsed]}")
        return tuple(parsed)

    def check(
        self, compose: Callable[[list[str]], DictConfig], groups: Callable[[str], list[str]], extra: Sequence[str]
    ) -> DictConfig:
        """Against the experiment config: every fixed override composes, every knob is an existing key (in the
        config its conditions select) or group option, every objective a metric the module logs. Returns the
        config with the fixed overrides (``extra`` are the command line's)."""
        fixed = [*self.fixed, *extra]
        try:
            base = compose(fixed)
        except HydraException as err:
            raise ConfigError(f"sweep.fixed / overrides: {fixed} do not compose: {err}") from err
        fixed_keys = {o.lstrip("+~").split("=", 1)[0] for o in fixed}
        by_name = {p.name: p for p in self.params}
        for param in self.params:
            key = f"sweep.params.{param.name}"
            if param.name in fixed_keys:
                raise ConfigError(f"{key}: also fixed by an override; drop it from sweep.fixed or from the knobs")
            options = groups(param.name)
            if options:
                bad = [c for c in param.choices if c not in options] if param.kind == "categorical" else [None]
                if bad:
                    raise ConfigError(f"{key}: a config group: use type categorical with choices among {options}")
                continue
            condition = [f"{name}={hydra_value(value)}" for name, value in self._condition(param, by_name).items()]
            node = OmegaConf.select(compose([*fixed, *condition]), param.name, default=KeyError)
            if node is KeyError:
                raise ConfigError(
                    f"{key}: no such key in the experiment config{' with ' + ', '.join(condition) if condition else ''}"
                    "; name an existing key (see experiments/conf), or add it to sweep.fixed with +KEY=VALUE"
                )
            if OmegaConf.is_config(node):
                raise ConfigError(f"{key}: a config node, not a value; tune one of its keys ({param.name}.NAME)")
        valid = metric_names(base.eval.fp_thresholds)
        for i, objective in enumerate(self.objectives):
            if objective.metric not in valid:
                raise ConfigError(
                    f"sweep.objectives[{i}].metric: unknown metric {objective.metric!r} (a validation metric, "
                    f"without the 'val/' prefix); valid: {', '.join(valid)}"
                )
        if self.pruner is not None and len(self.objectives) > 1:
            raise ConfigError("sweep.pruner: Optuna prunes single-objective studies only; set sweep.pruner=null")
        return base

    @classmethod
    def _condition(cls, param: Param, by_name: dict[str, Param]) -> dict[str, Scalar]:
        """Values of the knobs ``param`` is conditional on (recursively): the config in which its key must exist."""
        values: dict[str, Scalar] = {}
        for other, allowed in param.when.items():
            values |= cls._condition(by_name[other], by_name)
            values[other] = allowed[0]
        return values

    def draw(self, trial: optuna.Trial) -> list[str]:
        """The trial's knobs as experiment overrides; a conditional knob is drawn only when its condition holds."""
        drawn: dict[str, Scalar] = {}
        for param in self.params:
            if param.active(drawn):
                drawn[param.name] = param.suggest(trial)
        return [f"{name}={hydra_value(value)}" for name, value in drawn.items()]

    def identity(self, extra: Sequence[str]) -> dict[str, Any]:
        """What makes trials comparable: a study resumed with another identity would mix incomparable trials.
        Overrides of where things go (``paths``, ``logger``) are not part of it, as for a job's identity."""
        return {
            "fixed": [o for o in [*self.fixed, *extra] if _top_key(o) not in NOT_IDENTITY],
            "params": {p.name: {k: v for k, v in vars(p).items() if k != "name"} for p in self.params},
            "objectives": [vars(o) for o in self.objectives],
        }
