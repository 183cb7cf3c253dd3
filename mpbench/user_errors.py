"""Bad input, said in one line: which key or file is wrong and what would be valid.

Our own checks raise ConfigError / DatasetError with such a line already. Hydra's composition
errors span several lines (search paths, hints); `one_line` condenses them.
"""

from __future__ import annotations

import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mpbench.data import DatasetError
from mpbench.errors import ConfigError

USER_ERRORS = (ConfigError, DatasetError, HydraException, OmegaConfBaseException)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments"


def _composed_keys(overrides: list[str], group: str) -> tuple[str, list[str]] | None:
    """(the chosen option's name, its keys) of `group`, composed with `overrides` as Hydra would
    (a group file may extend another); None if they do not compose (a multirun list)."""
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            section = compose(config_name="config", overrides=overrides)[group]
    except Exception:  # noqa: BLE001 - any composition failure: fall back to every option's keys
        return None
    return str(section.get("name")), sorted(section.keys())


def _valid_keys(key: str, overrides: list[str]) -> tuple[str, list[str]]:
    """Where `key` was looked for and the keys that exist there: the top level, or the chosen
    option of its group (every option of the group when the choice is not known)."""
    group, _, _ = key.rpartition(".")
    if not group:
        top = OmegaConf.load(CONFIG_DIR / "config.yaml")
        return "there", [k for k in top if k not in ("defaults", "hydra")] + [
            p.name for p in sorted(CONFIG_DIR.iterdir()) if p.is_dir()]
    group = group.split(".")[0]
    others = [o for o in overrides if not o.lstrip("+~").split("=")[0].startswith(group + ".")
              and not o.startswith("hydra.") and not o.startswith("-")]
    chosen = _composed_keys(others, group)
    if chosen is not None:
        return f"of {group} {chosen[0]}", chosen[1]
    keys: set[str] = set()
    for option in sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")):
        composed = _composed_keys([f"{group}={option}"], group)
        keys.update(composed[1] if composed else [])
    return f"of {group}", sorted(keys)


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
