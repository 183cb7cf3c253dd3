"""Bad input, said in one line: which key or file is wrong and what would be valid.

Our own checks raise ConfigError / DatasetError with such a line already. Hydra's composition
errors span several lines (search paths, hints); `one_line` condenses them.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mpbench.data import DatasetError
from mpbench.errors import ConfigError

USER_ERRORS = (ConfigError, DatasetError, HydraException, OmegaConfBaseException)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments"


def _chosen_option(group: str, overrides: list[str]) -> str | None:
    """The option of config group `group` that the command line chose, else config.yaml's
    default; None when it is not one file (a multirun list, or a preset may have chosen it)."""
    choice = None
    for override in overrides:
        name, _, value = override.lstrip("+~").partition("=")
        if name == group:
            choice = value
        if name == "experiment" and choice is None:
            return None
    if choice is None:
        for entry in OmegaConf.load(CONFIG_DIR / "config.yaml").defaults:
            if isinstance(entry, dict) and group in entry:
                choice = entry[group]
    return choice if choice and "," not in choice else None


def _valid_keys(key: str, overrides: list[str]) -> tuple[str, list[str]]:
    """Where `key` was looked for and the keys that exist there: the top level, or the chosen
    option of its group (every option of the group when the choice is not known)."""
    group, _, _ = key.rpartition(".")
    if not group:
        top = OmegaConf.load(CONFIG_DIR / "config.yaml")
        return "there", [k for k in top if k not in ("defaults", "hydra")] + [
            p.name for p in sorted(CONFIG_DIR.iterdir()) if p.is_dir()]
    option = _chosen_option(group, overrides)
    paths = [CONFIG_DIR / group / f"{option}.yaml"] if option else sorted((CONFIG_DIR / group).glob("*.yaml"))
    if not all(p.exists() for p in paths):
        paths = sorted((CONFIG_DIR / group).glob("*.yaml"))
        option = None
    keys: set[str] = set()
    for path in paths:
        keys.update(OmegaConf.load(path).keys())
    return (f"of {group} {option}" if option else f"of {group}"), sorted(keys)


def one_line(err: BaseException, overrides: list[str] | None = None) -> str:
    """`err` in one line; `overrides` (the command line) tell which option of a group was chosen."""
    text = str(err).strip()
    if isinstance(err, MissingConfigException) or "Could not find '" in text:
        missing = re.search(r"Could not find '([^']+)'", text)
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        if missing and "/" in missing.group(1):
            group, choice = missing.group(1).rsplit("/", 1)
            return f"unknown {group} {choice!r}; valid: {', '.join(options) or 'see experiments/' + group}"
    override = re.search(r"Could not override '([^']+)'", text)
    if override:
        key = override.group(1)
        where, keys = _valid_keys(key, overrides or [])
        return f"unknown config key {key!r}; valid keys {where}: {', '.join(keys)}"
    first = text.splitlines()[0] if text else type(err).__name__
    return first
