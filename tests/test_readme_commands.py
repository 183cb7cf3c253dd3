"""The README's and the docs' commands are true: each runs as written, at a tiny scale, and does
what its sentence says; or it is listed below as not run here, with the reason.

- **Which commands.** Every shell command in a command block of README.md or docs/**/*.md: a
  fenced block (```sh, ```bash, ```console or no language) or an indented one (four spaces after
  a blank line, outside a list), continuation lines (`\\`) joined, a trailing `# comment` or a
  description column (three or more spaces after the command) left out. A line is a command
  when it starts with a program (PROGRAMS); in a fenced shell block every line must. So a
  command added to a doc is picked up without touching this file.
- **Tiny scale.** A command runs in one workspace (the temporary directory stands for the
  checkout's root: results/ is written there), as a user who set $MPBENCH_DATA_DIR would run it,
  with at most these additions to a run.py command that names no preset: a measured one runs 4
  steps with 2 evaluations of 2 batches (its own model, batch and workers; `steps=` it names
  stays), a simulated one (which trains nothing: its scale is the model's size) the smoke
  preset's 2-layer GPT of width 32, deepened as the command says (`model.n_layer=`); a sweep
  gets `report.retime_steps=0` (no extra timing runs of its references: speed-ups are not what
  is checked here); and `analysis.paper` gets `--results <workspace>/results --no-record`
  (otherwise it writes into the checkout). Placeholders (`<time>`, `<dir>`, ...) are filled from what the
  commands before it made (PLACEHOLDERS).
- **Promises.** Every run.py command must leave its runs `ok` (a run's directory, its summary);
  where a sentence promises more, PROMISES checks it (the learning-rate sweep's best rows
  differ per method; the simulated scaling example skips no point; ...).
- **Not run here** (NOT_RUN): the set-up commands, which CI runs (`.ci/run`); what needs a
  cluster, several machines or a GPU; and the long jobs (`make bench`, `make reproduce`, the
  scaling preset), each with its reason.

One test per command (skipped, with its reason, when not run here), in reading order in one
workspace; nothing here is timed.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATASETS

DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
PROGRAMS = {"python", "python3", "torchrun", "make", "bash", "sh", "pip", "pytest", "sbatch", "srun", "git", "cd",
            "export", "env", "uv", "conda", "wandb"}
SHELL_FENCES = {"", "sh", "bash", "shell", "console", "zsh"}
LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s")
FENCE = re.compile(r"^\s{0,3}(```+|~~~+)\s*([\w+-]*)")


@dataclass(frozen=True)
class Command:
    """One documented shell command: its words (shell quoting undone, comment dropped)."""

    words: tuple[str, ...]
    doc: str
    line: int

    @property
    def text(self) -> str:
        return " ".join(self.words)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def _code_blocks(lines: list[str]) -> Iterator[tuple[int, list[str], bool]]:
    """(first line number, lines, fenced as shell) of each code block of a markdown file."""
    i, previous_text, in_list = 0, "", False
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            marker, language = fence[1], fence[2].lower()
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith(marker):
                j += 1
            if language in SHELL_FENCES:
                yield i + 2, lines[i + 1:j], True
            i, previous_text = j + 1, ""
            continue
        indented = line.startswith("    ") or line.startswith("\t")
        if indented and line.strip() and previous_text == "" and not in_list:
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or lines[j].startswith("\t") or not lines[j].strip()):
                j += 1
            yield i + 1, lines[i:j], False
            i = j
            continue
        if line.strip():
            if LIST_ITEM.match(line):
                in_list = True
            elif not line.startswith(" "):
                in_list = False  # a paragraph at the margin ends a list
        previous_text = line.strip()
        i += 1


def _is_program(word: str) -> bool:
    return word in PROGRAMS or word.rsplit("/", 1)[-1] in PROGRAMS


def _command_words(text: str) -> list[str]:
    """The words of a command line, its description column and comment left out; a placeholder
    of several words (`<same grid>`) stays one."""
    text = re.split(r"\s{3,}", text.strip(), maxsplit=1)[0]
    text = text[2:] if text.startswith("$ ") else text
    text = re.sub(r"<[^<>]*>", lambda m: m[0].replace(" ", "\0"), text)
    return [word.replace("\0", " ") for word in shlex.split(text, comments=True)]


def commands_in(path: Path) -> tuple[list[Command], list[str]]:
    """The commands of one markdown file, and the lines of its shell blocks that are none."""
    found, strays = [], []
    doc = str(path.relative_to(REPO))
    for first, block, fenced in _code_blocks(path.read_text().splitlines()):
        pending, start = "", first
        for offset, raw in enumerate(block):
            if not pending:
                start = first + offset
            stripped = raw.strip()
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            line, pending = pending + stripped, ""
            if not line or line.startswith("#"):
                continue
            plain = line.removeprefix("$ ").split()
            program = next((w for w in plain if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)), "")
            if _is_program(program):
                found.append(Command(tuple(_command_words(line)), doc, start))
            elif fenced:
                strays.append(f"{doc}:{start}: {line}")
    return found, strays


def documented_commands() -> list[Command]:
    """Every documented command, in reading order (README first), each text once."""
    seen, commands = set(), []
    for path in DOCS:
        for command in commands_in(path)[0]:
            if command.text not in seen:
                seen.add(command.text)
                commands.append(command)
    return commands


# ---- commands not run here, and why: (name, the command matches, reason) ----------------------------

NOT_RUN: list[tuple[str, Callable[[str], bool], str]] = [
    ("set-up", lambda t: "pip install" in t,
     "a set-up command: CI runs the test one in a fresh clone (.ci/run), and the main job it starts is "
     "`experiment=default_sweep`, whose points the tests run one by one (experiment=smoke here, and tests/)"),
    ("SLURM", lambda t: "hydra/launcher=slurm" in t,
     "needs a SLURM cluster; tests/test_cluster_launch.py runs the same sweeps with hydra/launcher=submitit_local"),
    ("the cluster's sweep", lambda t: "results/sweeps/c1" in t and "hydra/launcher=slurm" not in t,
     "reads results/sweeps/c1, which the SLURM sweep above writes"),
    ("several nodes", lambda t: bool(re.search(r"--nnodes[= ]([2-9]|\d\d)", t)),
     "needs several machines; tests/test_multinode.py runs two torchrun launchers on localhost as two nodes"),
    ("a GPU", lambda t: "gpu_check" in t, "needs a CUDA GPU (minutes there)"),
    ("long: make", lambda t: bool(re.match(r"make (bench|reproduce|simulator-accuracy|convergence|sweep|test)\b", t)),
     "minutes to hours of measurements (make bench, make reproduce, ...), or this test suite itself (make test)"),
    ("long: benchmarks", lambda t: "-m benchmarks." in t, "a benchmark: minutes of measurements side by side"),
    ("long: scaling preset", lambda t: "experiment=scaling" in t,
     "the scaling preset: 5 algorithms x 7 worker counts, simulated and measured (5 minutes on 2 vCPUs); the "
     "README's simulated scaling example runs here, and tests/test_simulate_cli.py runs simulated sweeps"),
    ("long: a paper table", lambda t: "analysis.paper" in t and not re.search(r"--list|\blc_table5\b", t),
     "a paper table that trains: minutes at quick scale (its budget: `python -m analysis.paper --list`); "
     "lc_table5, counted in seconds, runs here"),
]

# Documented commands known to be wrong whose doc another session owns (issue 28 item 5): not run
# until the doc is fixed. An entry no longer found in the docs fails the test: delete it then.
KNOWN_WRONG: dict[str, str] = {}


def classify(command: Command) -> tuple[str, str]:
    """("run", "") or (name, reason) of a command not run here."""
    if command.text in KNOWN_WRONG:
        return "known wrong", KNOWN_WRONG[command.text]
    for name, matches, reason in NOT_RUN:
        if matches(command.text):
            return name, reason
    return "run", ""


# ---- running a command at tiny scale -----------------------------------------------------------------

# A measured run at tiny scale: its own model, batch and workers, for a few steps.
SHORT = {"steps": 4, "eval_every": 2, "eval_batches": 2}


@dataclass
class Workspace:
    """The directory the commands run in, and what they left there."""

    root: Path
    sweeps: list[tuple[Path, list[str]]] = field(default_factory=list)  # (sweep dir, its grid) in order


@dataclass
class Outcome:
    command: Command
    argv: list[str]
    result: subprocess.CompletedProcess
    run_dirs: list[Path]
    sweep_dir: Path | None


def _fill_placeholders(words: list[str], space: Workspace) -> list[str]:
    """The command with its placeholders filled from what earlier commands made."""
    sweeps = [s for s, _ in reversed(space.sweeps)]  # the latest first
    dirs = iter(sweeps + sweeps)  # successive <dir>s: distinct sweeps, to merge
    out: list[str] = []
    for i, word in enumerate(words):
        if word == "...":
            continue  # "and more of them"
        word = word.removeprefix("[").removesuffix("]")  # an optional part: given
        if re.search(r"<time>|<dir>|<sweep dir>|<same grid>", word):
            assert sweeps, f"{word!r} names a sweep an earlier command makes: run the commands in order"
        if i > 0 and words[i - 1] == "--out" and word == "<dir>":
            word = str(space.root / "merged")
        elif word in ("<dir>", "<sweep dir>"):
            word = str(next(dirs))
        elif word == "<same grid>":
            out.extend(space.sweeps[-1][1])
            continue
        word = word.replace("results/sweeps/<time>", str(sweeps[0]) if sweeps else "")
        word = word.replace("<yours>", "ddg")  # an algorithm that checkpoints, for the fault drill
        word = word.replace("mypackage.mymodule", "examples.char_mlp")  # "your module": the shipped example
        assert not re.search(r"<[^>]+>", word), f"unknown placeholder in {word!r}: add it to _fill_placeholders"
        out.append(word)
    return out


def _argv(words: list[str], space: Workspace) -> list[str]:
    """The command's argv here: this interpreter for python, torchrun through it, the checkout's
    run.py, and the tiny-scale additions."""
    program, rest = words[0], words[1:]
    if _is_program(program) and program.rsplit("/", 1)[-1] in ("python", "python3"):
        argv = [sys.executable]
    elif program == "torchrun":
        argv = [sys.executable, "-m", "torch.distributed.run"]
    else:
        raise AssertionError(f"no way to run {program!r} here: run it, or add it to NOT_RUN with the reason")
    if "run.py" in rest:
        at = rest.index("run.py")
        rest = [*rest[:at], str(REPO / "run.py"), *rest[at + 1:]]
        if any(w.startswith("experiment=") for w in rest):
            pass  # a preset sets its own scale
        elif "simulate=true" in rest:
            rest.append("experiment=smoke")  # trains nothing: its scale is the model's size (its depth stays)
        else:
            rest += [f"{key}={value}" for key, value in SHORT.items() if not any(w.startswith(f"{key}=") for w in rest)]
        if "-m" in rest:
            rest.append("report.retime_steps=0")
    if rest[:2] == ["-m", "analysis.paper"]:
        rest += ["--results", str(space.root / "results"), "--no-record"]
    return argv + rest


def _grid(words: list[str]) -> list[str]:
    """A sweep command's overrides, for `<same grid>`: its own words after run.py and -m."""
    after = words[words.index("run.py") + 1:]
    return [w for w in after if w != "-m" and not w.startswith(("hydra.sweep.dir=", "resume="))]


def _env() -> dict:
    """A user's environment: $MPBENCH_DATA_DIR set, the checkout importable (as from its root)."""
    env = {**os.environ, "MPBENCH_DATA_DIR": str(SHARED_DATASETS),
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    env.pop("MPBENCH_SIMULATE_ALONGSIDE", None)  # as a user runs it (the suite's default is never)
    return env


def run_command(command: Command, space: Workspace) -> Outcome:
    words = _fill_placeholders(list(command.words), space)
    argv = _argv(words, space)
    result = subprocess.run(argv, cwd=space.root, env=_env(), capture_output=True, text=True, timeout=900)
    run_dirs = [Path(m) for m in re.findall(r" -> (\S+)$", result.stdout, re.MULTILINE)]
    sweep = re.search(r"^results: (\S+)", result.stdout, re.MULTILINE)
    sweep_dir = Path(sweep[1]) if sweep else None
    if sweep_dir is not None:
        space.sweeps.append((sweep_dir, _grid(words)))
    return Outcome(command, argv, result, run_dirs, sweep_dir)


# ---- what each command promises -----------------------------------------------------------------------

def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _points(sweep_dir: Path) -> dict[str, dict]:
    """The sweep's own points (not its references), by directory name."""
    return {p.name: _summary(p) for p in sorted(sweep_dir.iterdir()) if (p / "summary.json").exists()}


def _runs_ok(out: Outcome) -> None:
    """A run.py command: exit 0, and every run it made recorded ok in its directory."""
    assert out.result.returncode == 0, out.result.stderr[-3000:]
    if out.sweep_dir is not None:
        points = _points(out.sweep_dir)
        assert points, f"no runs in {out.sweep_dir}"
        assert all(s["status"] == "ok" for s in points.values()), {n: s.get("reason") for n, s in points.items()}
        assert (out.sweep_dir / "report" / "report.md").exists()
    else:
        assert out.run_dirs, out.result.stdout[-2000:]
        for run_dir in out.run_dirs:
            assert run_dir.is_dir() and _summary(run_dir)["status"] == "ok", _summary(run_dir)


def _best_rates_differ(out: Outcome, space: Workspace) -> None:
    """The learning-rate sweep: best_learning_rates.csv has a row per method, and the rows differ
    (at one worker ddg and dni were backprop: three identical rows)."""
    _runs_ok(out)
    with open(out.sweep_dir / "report" / "best_learning_rates.csv") as f:
        rows = list(csv.DictReader(f))
    methods = {row["method"] for row in rows}
    swept = {w.split("=", 1)[1] for w in out.command.words if w.startswith("algorithm=")}
    assert {m for a in swept for m in a.split(",")} <= methods, rows
    tried = [row["learning rates tried"] for row in rows]
    assert len(set(tried)) == len(tried), f"methods with identical results: {rows}"


def _no_point_skipped(out: Outcome, space: Workspace) -> None:
    """The simulated scaling example: every point simulated, none skipped (at 8 workers and more
    on a model of too few blocks they were)."""
    _runs_ok(out)
    points = _points(out.sweep_dir)
    assert all(s.get("simulated") for s in points.values()), points
    gpus = sorted(s["gpus"] for s in points.values())
    assert max(gpus) >= 8 and len(gpus) == len(set(gpus)) * len({s["algorithm"] for s in points.values()})


def _on_images(out: Outcome, space: Workspace) -> None:
    """experiment=smoke with an image dataset: a run on that dataset."""
    _runs_ok(out)
    dataset = next(w.split("=")[1] for w in out.command.words if w.startswith("dataset="))
    assert all(_summary(d)["dataset"] == dataset for d in out.run_dirs)


def _oversubscribed_get_a_simulation(out: Outcome, space: Workspace) -> None:
    """A measured sweep: its oversubscribed points also carry a simulated speed-up."""
    _runs_ok(out)
    over = [s for s in _points(out.sweep_dir).values() if s.get("oversubscribed")]
    assert over and all("step_s" in (s.get("simulation") or {}) for s in over), over


def _report_written(out: Outcome, space: Workspace) -> None:
    assert out.result.returncode == 0, out.result.stderr[-3000:]
    words = out.argv
    target = Path(words[words.index("--out") + 1]) if "--out" in words else Path(words[3]) / "report"
    assert (target / "report.md").exists(), sorted(target.parent.iterdir())


def _tables_listed(out: Outcome, space: Workspace) -> None:
    assert out.result.returncode == 0, out.result.stderr[-3000:]
    assert re.search(r"^lc_table1: ", out.result.stdout, re.MULTILINE), out.result.stdout[:2000]


def _table_made(out: Outcome, space: Workspace) -> None:
    assert out.result.returncode == 0, out.result.stderr[-3000:]
    table = next(w for w in out.command.words[3:] if not w.startswith("-"))
    assert (space.root / "results" / "paper" / table / "table.md").exists()


def _not_run_again(out: Outcome, space: Workspace) -> None:
    """Resuming a finished sweep: every point is found finished and not run again."""
    assert out.result.returncode == 0, out.result.stderr[-3000:]
    points = _points(out.sweep_dir)
    assert out.result.stdout.count("already finished ok with this config; not run again") == len(points), \
        out.result.stdout[-3000:]


def _fails_then_resumes(out: Outcome, space: Workspace) -> None:
    """The fault drill: the run fails at the fault (exit 1, the rank named); "then the same command
    with fault=null resume=true" finishes it from its checkpoint."""
    assert out.result.returncode == 1, out.result.stderr[-3000:]
    (run_dir,) = out.run_dirs
    failed = _summary(run_dir)
    assert failed["status"] == "failed" and failed["failed_rank"] == 1, failed
    again = out.argv + ["fault=null", "resume=true"]
    if not any(w.startswith("hydra.run.dir=") for w in again):
        again.append(f"hydra.run.dir={run_dir}")
    resumed = subprocess.run(again, cwd=space.root, env=_env(), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = _summary(run_dir)
    assert summary["status"] == "ok" and summary["resumed_from_step"] == 2, summary


def _run_py(out: Outcome, space: Workspace) -> None:
    _runs_ok(out)


# (the command matches, its check): the first match applies.
PROMISES: list[tuple[Callable[[str], bool], Callable[[Outcome, Workspace], None]]] = [
    (lambda t: "analysis.report" in t, _report_written),
    (lambda t: "analysis.paper" in t and "--list" in t, _tables_listed),
    (lambda t: "analysis.paper" in t, _table_made),
    (lambda t: "resume=true" in t and " -m " in t, _not_run_again),
    (lambda t: "fault=" in t, _fails_then_resumes),
    (lambda t: bool(re.search(r"optimizer\.lr=[^ ]*,", t)), _best_rates_differ),
    (lambda t: "simulate=true" in t and " -m " in t, _no_point_skipped),
    (lambda t: bool(re.search(r"dataset=(cifar10|fashion_mnist)", t)), _on_images),
    (lambda t: " -m " in t and bool(re.search(r"gpus=[\d,]*\b([3-9]|\d\d)\b", t)), _oversubscribed_get_a_simulation),
    (lambda t: "run.py" in t, _run_py),
]


def promise_of(command: Command) -> Callable[[Outcome, Workspace], None]:
    check = next((check for matches, check in PROMISES if matches(command.text)), None)
    assert check is not None, f"{command.where}: `{command.text}` has no check: add one to PROMISES"
    return check


# ---- the tests -----------------------------------------------------------------------------------------

def test_every_documented_command_is_run_here_or_says_why_not():
    """Fast: the extraction, and every command either runnable here (a program to run it with, a
    check of what it promises) or not run for a stated reason; no stale exceptions."""
    commands = documented_commands()
    texts = [c.text for c in commands]
    # The extraction finds the commands of the README's blocks, indented or fenced.
    assert any(t.startswith("python run.py -m algorithm=ddg,dni optimizer.lr=") for t in texts), texts
    assert any(t.startswith("torchrun --nnodes=2") and t.endswith("hydra.run.dir=results/pipeline8") for t in texts)
    assert not any("  " in t or "#" in t for t in texts), [t for t in texts if "  " in t or "#" in t]
    strays = [s for path in DOCS for s in commands_in(path)[1]]
    assert not strays, f"lines of shell blocks that start with no known program (PROGRAMS): {strays}"
    for command in commands:
        kind, _ = classify(command)
        if kind == "run":
            assert command.words[0].rsplit("/", 1)[-1] in ("python", "python3", "torchrun"), \
                f"{command.where}: `{command.text}`: no way to run it here; run it or add it to NOT_RUN"
            promise_of(command)
    stale = [text for text in KNOWN_WRONG if text not in texts]
    assert not stale, f"no longer in the docs (fixed?): delete from KNOWN_WRONG: {stale}"
    # Two set-up commands, exactly: one installs and runs the main job, one installs and runs the tests.
    readme = commands_in(REPO / "README.md")[0]
    setup = [c.text for c in readme if classify(c)[0] == "set-up"]
    assert len(setup) == 2 and setup[0].endswith("run.py -m experiment=default_sweep") and \
        setup[1].endswith("-m pytest"), setup
    ci = (REPO / ".ci" / "run").read_text()
    assert setup[1] in ci  # CI runs the README's test command


def test_the_readme_is_a_front_door():
    """At most ~160 lines, and every relative link of the README and the docs resolves (a file,
    and a #section of a markdown file where one is named)."""
    assert len((REPO / "README.md").read_text().splitlines()) <= 160
    broken = []
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+://|^mailto:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such section)")
    assert not broken, broken


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.*)$", re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL),
                              re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


def test_the_tests_read_the_datasets_from_mpbench_data_dir(tmp_path):
    """The README says the tests read $MPBENCH_DATA_DIR, the variable runs read (they read
    MPBENCH_TEST_DATA_DIR only, once)."""
    probe = "import tests.conftest as c; print(c.SHARED_DATASETS)"
    env = {k: v for k, v in os.environ.items() if k not in ("MPBENCH_DATA_DIR", "MPBENCH_TEST_DATA_DIR")}
    for extra, expected in (({"MPBENCH_DATA_DIR": str(tmp_path)}, tmp_path),
                            ({"MPBENCH_DATA_DIR": str(tmp_path), "MPBENCH_TEST_DATA_DIR": "/elsewhere"}, tmp_path),
                            ({}, REPO.parent / "shared" / "datasets")):
        shown = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**env, **extra}, capture_output=True,
                               text=True, check=True).stdout.strip()
        assert Path(shown) == expected, (extra, shown)


def test_the_smoke_preset_combines_with_every_dataset():
    """experiment=smoke sets no key of one kind of dataset or model (it once set the text datasets'
    seq_len, so that `experiment=smoke dataset=cifar10` was refused)."""
    from mpbench.config import run_spec_from
    from tests.test_config import composed

    for dataset, model in (("tinyshakespeare", None), ("wikitext2", None), ("ptb", None), ("cifar10", "resnet20"),
                           ("fashion_mnist", "mlp")):
        spec = run_spec_from(composed(["experiment=smoke", f"dataset={dataset}", *([f"model={model}"] if model else [])]))
        assert spec.dataset == dataset and spec.steps == 4


COMMANDS = documented_commands()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    """One workspace for all the commands, which run in reading order: a report command reads
    the sweep before it (run one alone with -k and its placeholder has nothing to fill)."""
    return Workspace(tmp_path_factory.mktemp("checkout"))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_a_documented_command_runs_at_tiny_scale_and_does_what_it_says(command, workspace):
    kind, reason = classify(command)
    if kind != "run":
        pytest.skip(f"not run here: {kind}: {reason}")
    out = run_command(command, workspace)
    promise_of(command)(out, workspace)
