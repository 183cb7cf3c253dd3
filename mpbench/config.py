"""From the Hydra config to typed, validated objects, once, at the edge.

`run_spec_from(cfg)` is the only place that reads the Hydra/OmegaConf tree. Everything below it
(launch, trainer, algorithms, models, datasets) takes plain typed arguments. Each error raised
here is one line that names the bad key and says what would be valid.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mpbench.errors import ConfigError

DTYPES = ("float32", "float64", "bfloat16")
DEVICES = ("auto", "cpu", "cuda")
FAULT_KINDS = ("raise", "exit", "nan_loss", "nan_gradient")


def settings_from(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build the frozen dataclass `cls` from `values`, with one-line errors naming `where.key`.

    Lists become tuples (settings are frozen). A ValueError from the dataclass's own checks
    (`__post_init__`) is re-raised as a ConfigError prefixed with `where`.
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        valid = ", ".join(known) or "none"
        raise ConfigError(f"unknown key {where}.{unknown[0]}; valid keys of {where}: {valid}")
    hints = typing.get_type_hints(cls)
    converted = {}
    for name, value in values.items():
        if isinstance(value, list):
            value = tuple(value)
        _check_type(value, hints[name], f"{where}.{name}")
        converted[name] = value
    try:
        return cls(**converted)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None


def _check_type(value: Any, hint: Any, key: str) -> None:
    """Reject values of the wrong type (e.g. gpus='two') before they reach the code."""
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    allowed = typing.get_args(hint) if is_union else (hint,)
    for option in allowed:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return
        if origin is typing.Any:
            return
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if origin in (str, bool, tuple) and isinstance(value, origin):
            return
        if origin is Path and isinstance(value, (str, Path)):
            return
    names = " or ".join(getattr(typing.get_origin(o) or o, "__name__", str(o)) for o in allowed)
    raise ConfigError(f"{key} must be {names}, got {value!r}")


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer and its learning-rate schedule (`optimizer` config group)."""

    name: str = "adamw"  # sgd | adam | adamw
    lr: float = 1e-3
    weight_decay: float = 0.0  # applied to matrices and kernels only (dim >= 2), as nanoGPT
    momentum: float = 0.0  # sgd
    nesterov: bool = False  # sgd
    betas: tuple = (0.9, 0.999)  # adam, adamw
    eps: float = 1e-8  # adam, adamw
    schedule: str = "constant"  # constant | cosine | step
    warmup_steps: int = 0  # linear warm-up from lr/warmup_steps to lr, before any schedule
    min_lr_ratio: float = 0.0  # cosine: final lr as a fraction of lr
    milestones: tuple = ()  # step: steps at which lr is multiplied by decay_factor
    decay_factor: float = 0.1  # step
    clip_norm: float | None = None  # max L2 norm of each clip group's gradient (see optim.py); null: none

    def __post_init__(self):
        if self.name not in ("sgd", "adam", "adamw"):
            raise ValueError(f"name must be one of sgd, adam, adamw; got {self.name!r}")
        if self.schedule not in ("constant", "cosine", "step"):
            raise ValueError(f"schedule must be one of constant, cosine, step; got {self.schedule!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or self.momentum < 0 or self.warmup_steps < 0:
            raise ValueError("weight_decay, momentum and warmup_steps must be non-negative")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        if any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be positive steps, got {self.milestones}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be a positive number or null, got {self.clip_norm}")


@dataclass(frozen=True)
class LoggerSpec:
    """Where metrics go besides the run directory (`logger` config group)."""

    name: str = "local"  # local | wandb
    project: str = "mpbench"  # wandb
    mode: str = "offline"  # wandb: offline | online | disabled

    def __post_init__(self):
        if self.name not in ("local", "wandb"):
            raise ValueError(f"name must be local or wandb, got {self.name!r}")
        if self.mode not in ("offline", "online", "disabled"):
            raise ValueError(f"mode must be offline, online or disabled, got {self.mode!r}")


@dataclass(frozen=True)
class FaultSpec:
    """Test hook: make worker `rank` fail at `step`: "raise", "exit" (hard), "nan_loss" (its loss
    share is NaN) or "nan_gradient" (every gradient its optimizers apply in that step is NaN)."""

    rank: int = 0
    step: int = 0
    kind: str = "raise"

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}; got {self.kind!r}")


@dataclass(frozen=True)
class RunSpec:
    """Everything one training run needs, typed and checked."""

    algorithm: str
    algorithm_settings: Any
    model: str
    model_settings: Any
    dataset: str
    dataset_settings: Any
    optimizer: OptimizerSpec
    logger: LoggerSpec
    gpus: int
    device: str
    steps: int
    batch_size: int
    seed: int
    eval_every: int
    eval_batches: int
    dtype: str
    threads_per_worker: int
    timeout_s: float
    data_dir: Path
    cache_dir: Path
    save_weights: bool = False
    fault: FaultSpec | None = None
    checkpoint_every: int = 0  # steps between checkpoints; 0: none
    resume: bool = False  # skip a finished identical run; continue an unfinished one from its checkpoint
    divergence_patience: int = 0  # > 0: that many steps in a row with loss > divergence_factor x lowest: diverged
    divergence_factor: float = 2.0


def _check_top_level(cfg: dict) -> None:
    def positive_int(key):
        value = cfg[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")

    for key in ("gpus", "steps", "batch_size", "eval_every", "eval_batches", "threads_per_worker"):
        positive_int(key)
    if not isinstance(cfg["seed"], int) or isinstance(cfg["seed"], bool) or cfg["seed"] < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {cfg['seed']!r}")
    if cfg["dtype"] not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {cfg['dtype']!r}")
    if cfg["device"] not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}; got {cfg['device']!r}")
    for key in ("save_weights", "resume"):
        if not isinstance(cfg[key], bool):
            raise ConfigError(f"{key} must be true or false, got {cfg[key]!r}")
    every = cfg["checkpoint_every"]
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise ConfigError(f"checkpoint_every must be a non-negative integer (0: no checkpoints), got {every!r}")
    timeout = cfg["timeout_s"]
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout!r}")
    patience = cfg.get("divergence_patience", 0)
    if not isinstance(patience, int) or isinstance(patience, bool) or patience < 0:
        raise ConfigError(f"divergence_patience must be a non-negative integer (0: off), got {patience!r}")
    factor = cfg.get("divergence_factor", 2.0)
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor <= 1:
        raise ConfigError(f"divergence_factor must be a number above 1, got {factor!r}")
    _check_report(cfg.get("report"))


def _check_report(report: Any) -> None:
    """The sweep report's keys, checked before any run starts rather than when the sweep ends."""
    if report is None:
        return
    if not isinstance(report, dict) or set(report) - {"target", "target_margin"}:
        raise ConfigError(f"report must be a mapping with keys target, target_margin; got {report!r}")
    target, margin = report.get("target"), report.get("target_margin", 0.05)
    if target is not None and (not isinstance(target, (int, float)) or isinstance(target, bool)):
        raise ConfigError(f"report.target must be a number (the eval metric to reach) or null, got {target!r}")
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or not 0 <= margin < 1:
        raise ConfigError(f"report.target_margin must be a fraction in [0, 1), got {margin!r}")


def _directory(value: Any, key: str) -> Path | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(f"{key} must be a directory path or null, got {value!r}")
    return None if value is None else Path(os.path.expanduser(value)).resolve()


def _group(cfg: dict, group: str) -> tuple[str, dict]:
    section = cfg.get(group)
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"config group {group} is missing its name; choose one with {group}=<name>")
    values = dict(section)
    return values.pop("name"), values


def run_spec_from(cfg: DictConfig) -> RunSpec:
    """Turn the composed Hydra config into a RunSpec, or raise ConfigError with one line."""
    # Imported here: the registries' modules import this one (for OptimizerSpec, RunSpec).
    from algorithms import ALGORITHMS
    from models import MODELS
    from mpbench.data import DATASETS, default_cache_dir
    from mpbench.data.registry import resolve_data_dir

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    _check_top_level(plain)

    def choose(group: str, registry: dict) -> tuple[str, Any]:
        name, values = _group(plain, group)
        if name not in registry:
            raise ConfigError(f"unknown {group} {name!r}; valid: {', '.join(sorted(registry))}")
        settings_cls = registry[name][0]
        return name, settings_from(settings_cls, values, group)

    algorithm, algorithm_settings = choose("algorithm", ALGORITHMS)
    model, model_settings = choose("model", MODELS)
    dataset, dataset_settings = choose("dataset", DATASETS)
    opt_name, opt_values = _group(plain, "optimizer")
    optimizer = settings_from(OptimizerSpec, {"name": opt_name, **opt_values}, "optimizer")
    log_name, log_values = _group(plain, "logger")
    logger = settings_from(LoggerSpec, {"name": log_name, **log_values}, "logger")
    fault = plain.get("fault")
    if fault is not None:
        if not isinstance(fault, dict):
            raise ConfigError(f"fault must be a mapping with rank, step, kind; got {fault!r}")
        fault = settings_from(FaultSpec, fault, "fault")

    spec = RunSpec(
        algorithm=algorithm, algorithm_settings=algorithm_settings,
        model=model, model_settings=model_settings,
        dataset=dataset, dataset_settings=dataset_settings,
        optimizer=optimizer, logger=logger,
        gpus=plain["gpus"], device=plain["device"], steps=plain["steps"],
        batch_size=plain["batch_size"], seed=plain["seed"], eval_every=plain["eval_every"],
        eval_batches=plain["eval_batches"], dtype=plain["dtype"],
        threads_per_worker=plain["threads_per_worker"], timeout_s=float(plain["timeout_s"]),
        data_dir=resolve_data_dir(_directory(plain["data_dir"], "data_dir")),
        cache_dir=_directory(plain["cache_dir"], "cache_dir") or default_cache_dir(),
        save_weights=plain["save_weights"],
        fault=fault,
        checkpoint_every=plain["checkpoint_every"],
        resume=plain["resume"],
        divergence_patience=plain.get("divergence_patience", 0),
        divergence_factor=float(plain.get("divergence_factor", 2.0)),
    )
    if spec.fault is not None and not 0 <= spec.fault.rank < spec.gpus:
        raise ConfigError(f"fault.rank must be a worker rank in 0..{spec.gpus - 1}, got {spec.fault.rank}")
    return spec
