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


def _valid_keys(key: str) -> list[str]:
    """Keys that exist where `key` was looked for: top-level keys, or the keys of a group."""
    group, _, _ = key.rpartition(".")
    if not group:
        top = OmegaConf.load(CONFIG_DIR / "config.yaml")
        return [k for k in top if k not in ("defaults", "hydra")] + [
            p.name for p in sorted(CONFIG_DIR.iterdir()) if p.is_dir()]
    keys: set[str] = set()
    for path in sorted((CONFIG_DIR / group).glob("*.yaml")):
        keys.update(OmegaConf.load(path).keys())
    return sorted(keys)


def one_line(err: BaseException) -> str:
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
        return f"unknown config key {key!r}; valid keys there: {', '.join(_valid_keys(key))}"
    first = text.splitlines()[0] if text else type(err).__name__
    return first
