"""From the Hydra config to typed, validated objects, once, at the edge.

`run_spec_from(cfg)` is the only place that reads the Hydra/OmegaConf tree. Everything below it
(launch, trainer, algorithms, models, datasets) takes plain typed arguments. Every section is a
`Settings` dataclass (mpbench/settings.py): the top-level keys are `RunSettings`, the groups are
the registered algorithm's, model's and dataset's settings, `OptimizerSpec` and `LoggerSpec`.
Each error raised here is one line that names the bad key and says what would be valid.
docs/configuration.md lists every key; it is generated from the field docstrings below
(`python -m mpbench.config_docs`).
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf

from mpbench.errors import ConfigError
from mpbench.settings import Settings, check_range, check_type

GROUPS = ("algorithm", "model", "dataset", "optimizer", "logger")
MAX_SEED = 2**63 - 1  # seeds are int64 for torch and NumPy
MAX_TIMEOUT_S = 7 * 24 * 3600  # a week: longer waits overflow torch's timeouts (inf does) and hide hangs


def settings_from(cls: type, values: dict[str, Any], where: str, chosen: str | None = None,
                  others: dict[str, type] | None = None) -> Any:
    """Build the settings dataclass `cls` from `values`, with one-line errors naming `where.key`.

    A mapping given to a field whose type is a settings class is built into that class (the
    `report` and `fault` sections). Errors of the class's own checks are prefixed with `where`.
    `chosen` names the option of group `where` that `cls` belongs to and `others` maps every
    option of the group to its settings class, so that a key of another option says so.
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    prefix = f"{where}." if where else ""
    if unknown:
        key, valid = unknown[0], ", ".join(known) or "none"
        owners = sorted(name for name, other in (others or {}).items()
                        if name != chosen and key in {f.name for f in dataclasses.fields(other)})
        if chosen and owners:
            raise ConfigError(f"{prefix}{key} is a key of {where} {', '.join(owners)}, not of {chosen} "
                              f"(the chosen one); valid keys of {where} {chosen}: {valid}")
        raise ConfigError(f"unknown key {prefix}{key}; valid keys{' of ' + where if where else ''}"
                          f"{' ' + chosen if chosen else ''}: {valid}")
    required = [f.name for f in known.values() if f.name not in values
                and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required:
        raise ConfigError(f"{prefix}{required[0]} is required{' by ' + where + ' ' + chosen if chosen else ''} "
                          f"but has no value; set {prefix}{required[0]}=...")
    hints = typing.get_type_hints(cls)
    converted = {}
    for name, value in values.items():
        section = _settings_class(hints[name])
        if section is not None and isinstance(value, dict):
            value = settings_from(section, value, prefix + name)
        if isinstance(value, list):
            value = tuple(value)
        try:
            check_type(value, hints[name], prefix + name)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        converted[name] = value
    try:
        return cls(**converted)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        text = str(err)
        if not where:
            raise ConfigError(text) from None
        # "lr must be positive" about the optimizer reads as "optimizer.lr must be positive".
        raise ConfigError(f"{where}.{text}" if text.split(" ")[0] in known else f"{where}: {text}") from None


def _settings_class(hint: Any) -> type | None:
    """The settings dataclass among the options of `hint` (e.g. FaultSpec in `FaultSpec | None`)."""
    options = typing.get_args(hint) or (hint,)
    return next((o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o)), None)


@dataclass(frozen=True)
class OptimizerSpec(Settings):
    """An optimizer and its learning-rate schedule (`optimizer` config group)."""

    name: Literal["sgd", "adam", "adamw"] = "adamw"
    """The optimizer of the model's parameters (every algorithm; local modules have their own)."""
    lr: float = 1e-3
    """Peak learning rate."""
    weight_decay: float = 0.0
    """Decoupled (adamw) or L2 (sgd, adam) weight decay, on matrices and kernels only (dim >= 2), as nanoGPT."""
    momentum: float = 0.0
    """SGD momentum."""
    nesterov: bool = False
    """SGD: Nesterov momentum."""
    betas: tuple[float, ...] = (0.9, 0.999)
    """Adam and AdamW: the two moment decay rates."""
    eps: float = 1e-8
    """Adam and AdamW: the denominator's epsilon."""
    schedule: Literal["constant", "cosine", "step"] = "constant"
    """Learning rate after warm-up: constant, cosine decay to min_lr_ratio x lr, or step decay at milestones."""
    warmup_steps: int = 0
    """Linear warm-up from lr / warmup_steps to lr over the first steps, before any schedule."""
    min_lr_ratio: float = 0.0
    """cosine: the final learning rate as a fraction of lr."""
    milestones: tuple[int, ...] = ()
    """step: the steps at which the learning rate is multiplied by decay_factor."""
    decay_factor: float = 0.1
    """step: the factor applied at each milestone."""
    clip_norm: float | None = None
    """Clip the gradients to this L2 norm; null: no clipping. What one norm covers depends on the family (docs/algorithms)."""

    def validate(self) -> None:
        check_range("lr", self.lr, 0, low_open=True)
        check_range("weight_decay", self.weight_decay, 0)
        check_range("momentum", self.momentum, 0, 1, high_open=True)
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        for beta in self.betas:
            check_range("betas", beta, 0, 1, high_open=True)
        check_range("eps", self.eps, 0, low_open=True)
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be a non-negative integer, got {self.warmup_steps!r}")
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        if any(m <= 0 for m in self.milestones):
            raise ValueError(f"milestones must be positive steps, got {list(self.milestones)}")
        if list(self.milestones) != sorted(set(self.milestones)):
            raise ValueError(f"milestones must be increasing steps, got {list(self.milestones)}")
        check_range("decay_factor", self.decay_factor, 0, 1, low_open=True)
        if self.clip_norm is not None:
            check_range("clip_norm", self.clip_norm, 0, low_open=True)


@dataclass(frozen=True)
class LoggerSpec(Settings):
    """Where metrics go besides the run directory (`logger` config group)."""

    name: Literal["local", "wandb"] = "local"
    """local: metrics.jsonl and summary.json only; wandb: also Weights & Biases."""
    project: str = "mpbench"
    """wandb: the project."""
    mode: Literal["offline", "online", "disabled"] = "offline"
    """wandb: offline (files in the run directory, no network), online, or disabled."""


@dataclass(frozen=True)
class FaultSpec(Settings):
    """Test hook: make worker `rank` fail at `step` (see docs/operations.md)."""

    rank: int = 0
    """The worker that fails."""
    step: int = 0
    """The step (1-based) at which it fails."""
    kind: Literal["raise", "exit", "nan_loss", "nan_gradient"] = "raise"
    """raise: an exception; exit: os._exit(3), no report; nan_loss: its loss share is NaN; nan_gradient: every gradient its optimizers apply in that step is NaN."""

    def validate(self) -> None:
        if self.rank < 0:
            raise ValueError(f"rank must be a worker rank (0 or more), got {self.rank}")
        if self.step < 1:
            raise ValueError(f"step must be a step of the run (1-based: 1 or more), got {self.step}")


@dataclass(frozen=True)
class ReportSpec(Settings):
    """The report a multirun writes into <sweep dir>/report (`python -m analysis.report`)."""

    target: float | None = None
    """Eval-metric target of "time to target"; null: the backprop reference's final metric, relaxed by target_margin."""
    target_margin: float = 0.05
    """Relaxation of the reference's final metric: x 1.05 for bits per char or perplexity, x 0.95 for accuracy."""
    add_reference: bool = True
    """A sweep without the backprop run on 1 worker of one of its computations runs it at its end (analysis/reference.py)."""
    retime_steps: int = 20
    """Steps of the backprop x 1 timing run before each measured point of a sweep and after the last (a point's speed-up is over the two around it); 0: none, speed-ups over the reference's own run."""

    def validate(self) -> None:
        if self.target is not None:
            check_range("target", self.target)
        if not 0 <= self.target_margin < 1:
            raise ValueError(f"target_margin must be a fraction in [0, 1), got {self.target_margin!r}")
        if self.retime_steps != 0 and self.retime_steps < 5:
            raise ValueError(f"retime_steps must be 0 (no timing runs) or at least 5 (a median of steady steps), "
                             f"got {self.retime_steps}")


@dataclass(frozen=True)
class SimulatorSpec(Settings):
    """The calibrated simulator (mpbench/simulate/, docs/simulator.md)."""

    link: Literal["measured", "nvlink4", "pcie4", "infiniband_hdr", "infiniband_hdr100", "ethernet_100g", "ethernet_10g"] = "measured"
    """Link latency and bandwidth: measured by a ping-pong over gloo/NCCL on this machine (cached), or a preset."""
    alongside: Literal["oversubscribed", "always", "never"] = "oversubscribed"
    """Which measured runs also get a simulated step and speed-up in their summary (labelled simulated)."""
    profile_rows: int = 256
    """Most rows of a batch the profile times; the costs of larger (micro)batches, and of the one-worker reference of a
    large global batch, are that size's scaled linearly (time per row is flat once a batch fills the device)."""

    worker_speed: float = 1.0
    """A what-if: each simulated worker computes this many times faster than the profiled one (e.g. a many-core
    cluster node against one core here); links and bytes are unchanged. 1: the profile's own speed."""
    profile: str | None = None
    """The file the profile is kept in; null: one per sweep (<sweep dir>/simulator/, every point of a multirun
    simulated from the same one) or the single run's own. A file named here is taken once and then read by every
    run that names it, e.g. to compare two sweeps (links, worker_speed) from one profile."""

    def validate(self) -> None:
        if self.profile_rows < 1:
            raise ValueError(f"profile_rows must be a positive number of rows, got {self.profile_rows!r}")
        if not self.worker_speed > 0:
            raise ValueError(f"worker_speed must be a positive factor, got {self.worker_speed!r}")
        if self.profile is not None and not self.profile.strip():
            raise ValueError("profile must be a file path or null, got ''")


@dataclass(frozen=True)
class RunSettings(Settings):
    """The top-level keys of experiments/config.yaml."""

    gpus: int = 1
    """Workers: GPUs, or gloo CPU processes when there are fewer GPUs than workers."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA with NCCL when there is one GPU per worker, else the CPU (with a notice); cuda fails without enough GPUs."""
    threads_per_worker: int = 1
    """CPU threads per worker: each worker is a fixed unit of compute, like a GPU."""
    worker_limit: int | Literal["auto", "cores"] = "auto"
    """The most CPU workers (gloo processes) a run may start; auto: 4 per available core, at least 8; cores: one per core (no oversubscribed run). A bound on mistakes such as gpus=1000, not on GPU runs; simulate=true starts none."""
    steps: int = 300
    """Training iterations."""
    batch_size: int = 32
    """The global batch; algorithms split it between workers."""
    seed: int = 0
    """Model initialisation and batch order (identical for every algorithm)."""
    eval_every: int = 100
    """Evaluate on the held-out split every N steps and at the end."""
    eval_batches: int = 8
    """Held-out batches per evaluation (the same fixed set every time)."""
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    """The number format of parameters and activations."""
    autocast: bool = False
    """Compute each model block under torch.autocast in bfloat16 (weights, gradients, optimizer and the activations between blocks stay in dtype, which must be float32); see mpbench/block_compute.py."""
    compile: bool = False
    """torch.compile each model block in place (off by default: it pays only on long runs; measured in benchmarks/gpu_check.sh)."""
    timeout_s: float = 300
    """Limit of every wait between workers (group creation, collectives, receives); a dead peer fails the run."""
    data_dir: str | None = None
    """Datasets; null: $MPBENCH_DATA_DIR, else this repository's data/."""
    cache_dir: str | None = None
    """Decoded-image cache; null: $XDG_CACHE_HOME/mpbench or ~/.cache/mpbench."""
    save_weights: bool = False
    """Write each worker's final weights to weights/rank<r>.pt."""
    checkpoint_every: int = 0
    """Steps between checkpoints (checkpoints/step<s>/rank<r>.pt, the latest kept); 0: none."""
    resume: bool = False
    """Skip a run that finished ok with this config; continue an unfinished one from its checkpoint."""
    divergence_patience: int = 0
    """> 0: that many steps in a row with a loss above divergence_factor x its lowest so far end the run as diverged."""
    divergence_factor: float = 2.0
    """The loss spike factor of divergence_patience (a non-finite loss or weights end a run in any case)."""
    fault: FaultSpec | None = None
    """Test hook, e.g. {rank: 1, step: 3, kind: raise}."""
    report: ReportSpec = ReportSpec()
    """The sweep report's target for "time to target"."""
    simulate: bool = False
    """true: simulate the run from profiled costs instead of training (a record marked simulated, in seconds)."""
    simulator: SimulatorSpec = SimulatorSpec()
    """The simulator's link model, and which measured runs get a simulated speed-up beside theirs."""

    def validate(self) -> None:
        for key in ("gpus", "steps", "batch_size", "eval_every", "eval_batches", "threads_per_worker"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be a positive integer, got {getattr(self, key)!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        if self.worker_limit not in ("auto", "cores") and self.worker_limit < 1:
            raise ValueError(f"worker_limit must be a positive integer, auto or cores, got {self.worker_limit!r}")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be a non-negative integer (0: no checkpoints), "
                             f"got {self.checkpoint_every!r}")
        check_range("timeout_s", self.timeout_s, 0, MAX_TIMEOUT_S, low_open=True)
        if self.divergence_patience < 0:
            raise ValueError(f"divergence_patience must be a non-negative integer (0: off), "
                             f"got {self.divergence_patience!r}")
        check_range("divergence_factor", self.divergence_factor, 1, low_open=True)
        if self.autocast and self.dtype != "float32":
            raise ValueError(f"autocast=true computes bfloat16 blocks from float32 weights; set dtype=float32, "
                             f"got dtype={self.dtype}")
        for key in ("data_dir", "cache_dir"):
            if getattr(self, key) == "":
                raise ValueError(f"{key} must be a directory path or null, got ''")
        if self.fault is not None and not 0 <= self.fault.rank < self.gpus:
            raise ValueError(f"fault.rank must be a worker rank in 0..{self.gpus - 1}, got {self.fault.rank}")
        if self.fault is not None and self.fault.step > self.steps:
            raise ValueError(f"fault.step must be a step of the run, in 1..{self.steps} (steps={self.steps}), "
                             f"got {self.fault.step}")


@dataclass(frozen=True, kw_only=True)
class RunSpec(RunSettings):
    """Everything one training run needs, typed and checked: the top-level keys and each group's
    choice, its settings and what runs it (the registered class and build function)."""

    algorithm: str
    algorithm_settings: Any
    algorithm_cls: type  # an mpbench.algorithm.Algorithm; travels to the workers by reference
    model: str
    model_settings: Any
    build_model: Callable[[Any, Any], Any]  # (settings, DataInfo) -> BlockModel
    dataset: str
    dataset_settings: Any
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    logger: LoggerSpec = field(default_factory=LoggerSpec)
    data_path: Path = Path("data")  # data_dir resolved
    cache_path: Path = Path(".cache")  # cache_dir resolved
    sweep_path: Path | None = None  # the multirun's sweep directory (None: a single run)


def check_group_choices(hydra_cfg: Any) -> None:
    """ConfigError for a list given to a config group (`algorithm=[backprop,data_parallel]`):
    Hydra would merge the options into one config and run that. `hydra_cfg` is HydraConfig.get()."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ValueType

    for override in OverridesParser.create().parse_overrides(list(hydra_cfg.overrides.task)):
        group = override.key_or_group
        if group in (*GROUPS, "experiment") and override.value_type == ValueType.ELEMENT \
                and isinstance(override.value(), list):
            options = [str(o) for o in override.value()]
            raise ConfigError(f"{override.input_line}: config group {group} takes one option, not a list (a list "
                              f"merges the options into one config); choose one, e.g. {group}={options[0] if options else '<name>'}, "
                              f"or sweep with -m {group}={','.join(options) or '<a>,<b>'}")


def _group(cfg: dict, group: str) -> tuple[str, dict]:
    section = cfg.get(group)
    if not isinstance(section, dict) or "name" not in section:
        raise ConfigError(f"config group {group} is missing its name; choose one with {group}=<name>")
    values = dict(section)
    return values.pop("name"), values


def _resolved(key: str, directory: str | None) -> Path | None:
    """`directory` made absolute, or ConfigError naming `key` when it cannot be (a symlink loop)."""
    if directory is None:
        return None
    try:
        return Path(os.path.expanduser(directory)).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: "Symlink loop from ..."
        reason = "a symlink loop" if isinstance(err, RuntimeError) else (err.strerror or str(err))
        raise ConfigError(f"{key} {directory} cannot be used: {reason}; set {key} to a directory") from None


def _sweep_dir() -> Path | None:
    """The sweep directory of the multirun this point belongs to (its points share the simulator's
    profile there); None in a single run, or outside a Hydra job (compose, tests)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return None
    return _resolved("hydra.sweep.dir", str(HydraConfig.get().sweep.dir))


def run_spec_from(cfg: DictConfig) -> RunSpec:
    """Turn the composed Hydra config into a RunSpec, or raise ConfigError with one line."""
    from mpbench.data import DATASETS, default_cache_dir
    from mpbench.data.registry import resolve_data_dir
    from mpbench.registry import ALGORITHMS, MODELS, lookup
    from mpbench.topology import check_worker_limit

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("hydra", None)
    missing = [f for f in dataclasses.fields(RunSettings) if f.name not in plain]
    if missing:  # deleted on the command line (~key): the YAML must say what a run uses
        default = OmegaConf.to_yaml({"v": dataclasses.asdict(RunSettings())[missing[0].name]}).strip()[3:]
        raise ConfigError(f"{missing[0].name} is a required key but was deleted (~{missing[0].name}); "
                          f"give it a value instead, e.g. {missing[0].name}={default}")
    top = settings_from(RunSettings, {k: v for k, v in plain.items() if k not in GROUPS}, "")
    if not top.simulate:  # a simulated run starts no processes
        check_worker_limit(top.gpus, top.device, top.worker_limit)

    algorithm, algorithm_values = _group(plain, "algorithm")
    algorithm_entry = lookup(ALGORITHMS, "algorithm", algorithm)
    model, model_values = _group(plain, "model")
    model_entry = lookup(MODELS, "model", model)
    dataset, dataset_values = _group(plain, "dataset")
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; valid: {', '.join(sorted(DATASETS))}")
    opt_name, opt_values = _group(plain, "optimizer")
    log_name, log_values = _group(plain, "logger")
    data_dir = _resolved("data_dir", top.data_dir)
    cache_dir = _resolved("cache_dir", top.cache_dir)
    return RunSpec(
        **{f.name: getattr(top, f.name) for f in dataclasses.fields(RunSettings)},
        algorithm=algorithm, algorithm_cls=algorithm_entry.cls,
        algorithm_settings=settings_from(algorithm_entry.settings, algorithm_values, "algorithm", algorithm,
                                         {name: entry.settings for name, entry in ALGORITHMS.items()}),
        model=model, build_model=model_entry.build,
        model_settings=settings_from(model_entry.settings, model_values, "model", model,
                                     {name: entry.settings for name, entry in MODELS.items()}),
        dataset=dataset, dataset_settings=settings_from(DATASETS[dataset][0], dataset_values, "dataset", dataset,
                                                        {name: entry[0] for name, entry in DATASETS.items()}),
        optimizer=settings_from(OptimizerSpec, {"name": opt_name, **opt_values}, "optimizer"),
        logger=settings_from(LoggerSpec, {"name": log_name, **log_values}, "logger"),
        data_path=resolve_data_dir(data_dir), cache_path=cache_dir or default_cache_dir(), sweep_path=_sweep_dir(),
    )
