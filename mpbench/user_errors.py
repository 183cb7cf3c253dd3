"""Bad input, said in one line: which key or file is wrong and what would be valid.

Our own checks raise ConfigError / DatasetError with such a line already. Hydra's composition
errors span several lines (search paths, hints); `one_line` condenses them.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from mpbench.data import DatasetError
from mpbench.errors import ConfigError

USER_ERRORS = (ConfigError, DatasetError, HydraException, OmegaConfBaseException)
CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments"
GROUPS = ("algorithm", "model", "dataset", "optimizer", "logger", "experiment")
# Hydra's command-line flags that take the next argument as their value (not an override).
_FLAGS_WITH_VALUE = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "-c", "--cfg",
                     "-p", "--package", "--experimental-rerun", "-sc", "--shell-completion"}
# Characters typed (or pasted from a document) in place of ASCII ones that NFKC does not map.
_LOOK_ALIKES = {"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
                "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00d7": "x"}


def _ascii_look_alike(char: str) -> str | None:
    """The ASCII character `char` stands in for (full-width '＝' for '=', '–' for '-'), if any."""
    if char in _LOOK_ALIKES:
        return _LOOK_ALIKES[char]
    normal = unicodedata.normalize("NFKC", char)
    return normal if normal.isascii() and normal.strip() else (" " if char.isspace() else None)


def _non_ascii(text: str) -> str:
    """'＝' (U+FF1D) for the first non-ASCII character of `text`."""
    char = next(c for c in text if not c.isascii())
    return f"{char!r} (U+{ord(char):04X})"


def check_overrides(args: list[str]) -> list[str]:
    """The command line `args` as Hydra should parse them, or ConfigError (one line) for an override
    it would reject with lexer jargon. Hydra's grammar takes no unquoted non-ASCII character: a
    plain value such as a path with 'é' is quoted for it; an ASCII look-alike ('＝', '１', '–'
    typed for '=', '1', '-') is an error that names it; so are unbalanced brackets."""
    checked, takes_value = [], False
    for arg in args:
        if takes_value or arg.startswith("-"):
            takes_value = arg in _FLAGS_WITH_VALUE
            checked.append(arg)
            continue
        key, equals, value = arg.partition("=")
        quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        typed = key if quoted else arg  # a quoted value is taken as written
        look_alike = next(((c, _ascii_look_alike(c)) for c in typed if not c.isascii() and _ascii_look_alike(c)),
                          None)
        if look_alike:
            char, meant = look_alike
            raise ConfigError(f"override {arg!r} contains the non-ASCII character {char!r} (U+{ord(char):04X}); "
                              f"use {meant!r}" + (" (or quote the value to keep it: key='...')" if equals else ""))
        if not equals and not arg.isascii():
            raise ConfigError(f"override {arg!r} is not key=value: it contains the non-ASCII character "
                              f"{_non_ascii(arg)}")
        if not key.isascii():
            raise ConfigError(f"override {arg!r}: the key {key!r} contains the non-ASCII character {_non_ascii(key)}; "
                              f"config keys are ASCII")
        plain_non_ascii = not value.isascii() and not quoted and value[0] not in "[{" and "," not in value
        unbalanced = None if quoted or plain_non_ascii else _unbalanced(value)
        if unbalanced:
            raise ConfigError(f"override {arg!r} is not valid: {unbalanced}")
        if plain_non_ascii:
            quote = "'" if "'" not in value else '"'
            if quote in value:
                raise ConfigError(f"override {arg!r}: a value with the non-ASCII character {_non_ascii(value)} "
                                  f"must be quoted, and it holds both quote characters")
            arg = f"{key}={quote}{value}{quote}"  # Hydra's grammar takes any character in quotes
        checked.append(arg)
    return checked


def _unbalanced(value: str) -> str | None:
    """What is unbalanced in an override's value (brackets or quotes, outside quotes), or None."""
    stack, quote = [], None
    pairs = {"]": "[", "}": "{", ")": "("}
    for i, char in enumerate(value):
        if quote:
            if char == quote and value[i - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            stack.append(char)
        elif char in pairs:
            if not stack:
                return f"unbalanced brackets ({char!r} without its opening {pairs[char]!r})"
            if stack[-1] != pairs[char]:
                expected = {v: k for k, v in pairs.items()}[stack[-1]]
                return f"unbalanced brackets ({char!r} where {expected!r} was expected)"
            stack.pop()
    if quote:
        return f"unbalanced quotes ({quote} without its closing {quote})"
    if stack:
        closing = {v: k for k, v in pairs.items()}[stack[-1]]
        return f"unbalanced brackets ({stack[-1]!r} without its closing {closing!r})"
    return None


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


def _options_having(group: str, key: str, chosen: str | None) -> list[str]:
    """The options of config group `group` (other than `chosen`) whose composed config has `key`."""
    owners = []
    for option in sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml")):
        composed = _composed_keys([f"{group}={option}"], group)
        if composed and composed[0] != chosen and key in composed[1]:
            owners.append(option)
    return owners


def _parse_error(override: str, text: str) -> str:
    """Why Hydra's grammar rejects `override`, said without lexer terms."""
    _, equals, value = override.partition("=")
    if not override.isascii():
        return (f"override {override!r} contains the non-ASCII character {_non_ascii(override)}; quote the "
                f"value (key='...'), or for a list or mapping quote each item")
    problem = _unbalanced(value if equals else override)
    if problem:
        return f"override {override!r} is not valid: {problem}"
    detail = next((line for line in text.splitlines() if line and not line.startswith(("Error parsing", "See "))),
                  "")
    detail = re.sub(r"^(LexerNoViableAltException|no viable alternative at input)\b:? ?", "", detail).strip()
    return (f"override {override!r} is not valid override syntax{' near ' + repr(detail) if detail else ''}; "
            f"write key=value, and quote a value with special characters: key='...'")


def _several_values(arg: str) -> str:
    """`key=a,b` without -m: Hydra's hint, in one line."""
    key = arg.split("=", 1)[0].lstrip("+~")
    if key.split("@")[0] in GROUPS:
        return f"override {arg!r} gives {key} several values: add -m (--multirun) for a sweep over {key}"
    return (f"override {arg!r} gives {key} several values: add -m (--multirun) for a sweep over {key}, "
            f"or write a list as {key}=[...], or quote a string: {key}='...'")


def one_line(err: BaseException, overrides: list[str] | None = None) -> str:
    """`err` in one line; `overrides` (the command line) tell which option of a group was chosen."""
    text = str(err).strip()
    if isinstance(err, OverrideParseException):
        return _parse_error(err.override, text)
    if isinstance(err, MissingConfigException) or "Could not find '" in text:
        missing = re.search(r"Could not find '([^']+)'", text)
        options = re.findall(r"^\t(\S+)$", text, flags=re.MULTILINE)
        if missing and "/" in missing.group(1):
            group, choice = missing.group(1).rsplit("/", 1)
            return f"unknown {group} {choice!r}; valid: {', '.join(options) or 'see experiments/' + group}"
    several = re.search(r"Ambiguous value for argument '(.+)'$|Sweep parameters '(.+)' requires --multirun",
                        text.splitlines()[0] if text else "")
    if several:
        return _several_values(several.group(1) or several.group(2))
    interpolated = re.search(r"Interpolation key '([^']+)' not found", text)
    if interpolated:
        key = interpolated.group(1)
        deleted = next((o for o in overrides or [] if o.startswith("~") and
                        (key == o[1:].split("=")[0] or key.startswith(o[1:].split("=")[0] + "."))), None)
        if deleted:
            return (f"{key} is a required key (experiments/config.yaml uses it) but {deleted!r} deletes it; "
                    f"remove that override")
    override = re.search(r"Could not override '([^']+)'", text)
    if override:
        key = override.group(1)
        where, keys = _valid_keys(key, overrides or [])
        group, _, rest = key.partition(".")
        if where.startswith(f"of {group} ") and rest:
            chosen = where.split(" ", 2)[2]
            owners = _options_having(group, rest.split(".")[0], chosen)
            if owners:
                return (f"{key} is a key of {group} {', '.join(owners)}, not of {chosen} (the chosen one); "
                        f"valid keys of {group} {chosen}: {', '.join(keys)}")
        return f"unknown config key {key!r}; valid keys {where}: {', '.join(keys)}"
    first = text.splitlines()[0] if text else type(err).__name__
    return first


def in_results_dir(filename: str | bytes | None, args: list[str]) -> bool:
    """Whether an OSError about `filename` is about the results directory (hydra.run.dir or
    hydra.sweep.dir, a folder in it, or a parent that could not be made), not another path."""
    if filename is None:
        return False
    from hydra.core.hydra_config import HydraConfig

    dirs = [Path("results")]  # experiments/config.yaml's default, relative to the working directory
    dirs += [Path(a.split("=", 1)[1].strip("'\"")) for a in args
             if a.lstrip("+").startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    if HydraConfig.initialized():
        hydra_cfg = HydraConfig.get()
        # Only the resolved output directory: resolving run.dir or sweep.dir again would call
        # unique_dir, which makes a new directory (mpbench/run_dirs.py).
        directory = OmegaConf.select(hydra_cfg, "runtime.output_dir", default=None, throw_on_resolution_failure=False)
        if directory is not None:
            dirs.append(Path(str(directory)))
    path = Path(os.fsdecode(filename)).absolute()
    for directory in dirs:
        directory = directory.absolute()
        if path == directory or directory in path.parents or path in directory.parents:
            return True
    return False
