"""The catalogue of bad config through run.py, beyond tests/test_bad_input.py: models that do not fit
the data, numbers out of range (NaN, infinities, bounds), batches larger than the data, Hydra-level
mistakes (a sweep without -m, a list for a config group, a deleted key, a key of another option,
unbalanced brackets, non-ASCII look-alikes), the bound on CPU workers and unusable data_dir paths.

Each gives one `error:` line naming the key or file, exit code 2, no traceback, and no summary.json,
before any worker starts (so each case takes seconds)."""

from __future__ import annotations

import pytest

from tests.cli import TINY, run_cli
from tests.conftest import SHARED_DATASETS

DATA = f"data_dir={SHARED_DATASETS}"

CASES = {
    # -- models and datasets that do not fit each other (raised by the model builders and loaders)
    "sequence longer than the held-out split": (["dataset.seq_len=200000"], "dataset.seq_len=200000"),
    "model context shorter than the sequences": (["dataset.seq_len=128"], "model.context"),
    "gpt on cifar10": (["model=gpt_tiny", "dataset=cifar10", DATA], "cifar10"),
    "gpt on fashion_mnist": (["model=gpt_tiny", "dataset=fashion_mnist", DATA], "fashion_mnist"),
    "resnet on tinyshakespeare": (["model=resnet20"], "classification dataset"),
    "lc_vgg on tinyshakespeare": (["model=lc_vgg"], "classification dataset"),
    "resnet on ptb": (["model=resnet20", "dataset=ptb", DATA], "ptb"),
    "a custom text model on images": (["model=custom", "model.target=examples.char_mlp:build", "dataset=cifar10",
                                       DATA], "language-modelling"),
    # -- a batch larger than the data
    "batch larger than the text windows": (["batch_size=2000000"], "batch_size=2000000"),
    "batch larger than the training images": (["model=mlp", "dataset=fashion_mnist", DATA,
                                               "batch_size=60001"], "60000"),
    # -- numbers checked by range, not only by type
    "timeout NaN": (["timeout_s=nan"], "timeout_s"),
    "timeout infinite": (["timeout_s=inf"], "timeout_s"),
    "timeout negative": (["timeout_s=-1"], "timeout_s"),
    "timeout beyond a week": (["timeout_s=1e9"], "timeout_s"),
    "seed beyond int64": (["seed=99999999999999999999"], "seed"),
    "negative seed": (["seed=-1"], "seed"),
    "beta of 1.5": (["optimizer.betas=[0.9,1.5]"], "optimizer.betas"),
    "one beta": (["optimizer.betas=[0.9]"], "optimizer.betas"),
    "zero eps": (["optimizer.eps=0"], "optimizer.eps"),
    "infinite learning rate": (["optimizer.lr=inf"], "optimizer.lr"),
    "NaN learning rate": (["optimizer.lr=nan"], "optimizer.lr"),
    "negative learning rate": (["optimizer.lr=-0.1"], "optimizer.lr"),
    "negative weight decay": (["optimizer.weight_decay=-0.1"], "optimizer.weight_decay"),
    "momentum above 1": (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum"),
    "decay factor above 1": (["optimizer=sgd", "optimizer.decay_factor=2"], "optimizer.decay_factor"),
    "minimum lr ratio above 1": (["optimizer.min_lr_ratio=2"], "optimizer.min_lr_ratio"),
    "negative warm-up": (["optimizer.warmup_steps=-1"], "optimizer.warmup_steps"),
    "milestones out of order": (["optimizer=sgd", "optimizer.milestones=[5,2]"], "optimizer.milestones"),
    "fault after the last step": (["fault={rank:0,step:100,kind:raise}"], "fault.step"),
    "fault at step 0": (["fault={rank:0,step:0,kind:raise}"], "fault.step"),
    "fault on a negative rank": (["fault={rank:-1,step:1,kind:raise}"], "fault.rank"),
    "zero steps": (["steps=0"], "steps"),
    "zero batch": (["batch_size=0"], "batch_size"),
    "zero eval batches": (["eval_batches=0"], "eval_batches"),
    "negative eval interval": (["eval_every=-3"], "eval_every"),
    "infinite divergence factor": (["divergence_factor=inf"], "divergence_factor"),
    "NaN divergence factor": (["divergence_factor=nan"], "divergence_factor"),
    "NaN report target": (["report.target=nan"], "report.target"),
    "infinite report target": (["report.target=inf"], "report.target"),
    "zero threads per worker": (["threads_per_worker=0"], "threads_per_worker"),
    "infinite DDP bucket": (["algorithm=data_parallel", "gpus=2", "algorithm.bucket_cap_mb=inf"],
                            "algorithm.bucket_cap_mb"),
    "NaN critic learning rate": (["algorithm=local_critic", "gpus=2", "algorithm.critic_lr=nan"], "algorithm.critic_lr"),
    "NaN dropout": (["model.dropout=nan"], "dropout"),
    # -- the bound on CPU workers
    "a thousand CPU workers": (["gpus=1000"], "worker_limit"),
    "more workers than an explicit limit": (["algorithm=data_parallel", "gpus=9", "device=cpu", "worker_limit=8"],
                                            "worker_limit=8"),
    "zero worker limit": (["worker_limit=0"], "worker_limit"),
    # -- Hydra-level mistakes
    "a sweep of a group without -m": (["algorithm=backprop,data_parallel"], "-m (--multirun)"),
    "a sweep of a key without -m": (["steps=2,3"], "-m (--multirun)"),
    "a list of algorithms": (["algorithm=[backprop,data_parallel]"], "config group algorithm"),
    "a list of models": (["model=[gpt_tiny,gpt_mini]"], "config group model"),
    "a list of datasets": (["dataset=[tinyshakespeare,ptb]"], "config group dataset"),
    "a list of optimizers": (["optimizer=[adamw,sgd]"], "config group optimizer"),
    "a list of loggers": (["logger=[local,wandb]"], "config group logger"),
    "a list of presets": (["experiment=[smoke,lc1]"], "config group experiment"),
    "gpus deleted": (["~gpus"], "gpus is a required key"),
    "steps deleted": (["~steps"], "steps is a required key"),
    "optimizer deleted": (["~optimizer"], "optimizer"),
    "a model key without default deleted": (["~model.n_layer"], "model.n_layer"),
    "a key of sgd under adamw": (["optimizer.momentum=0.9"], "optimizer.momentum is a key of optimizer sgd"),
    "a key of cifar10 under tinyshakespeare": (["dataset.format=python"], "dataset.format is a key of dataset cifar10"),
    "a key of the pipeline under backprop": (["algorithm.microbatches=4"], "not of backprop"),
    "unbalanced list": (["algorithm.balance=[1,2"], "unbalanced brackets"),
    "unbalanced mapping": (["fault={rank:0,step:1"], "unbalanced brackets"),
    "full-width equals sign": (["gpus＝2"], "U+FF1D"),
    "full-width digits": (["steps=１０"], "U+FF11"),
    "an en-dash for a hyphen": (["algorithm=data–parallel"], "U+2013"),
}


def assert_refused(result, run_dir, named: str) -> str:
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith("error: ") and named in lines[0], lines[0]
    assert not (run_dir / "summary.json").exists()
    return lines[0]


pytestmark = pytest.mark.slow  # one process per case


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_config_gives_one_line_and_exit_2(case, tmp_path):
    overrides, named = CASES[case]
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert_refused(result, run_dir, named)


def _file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a directory")
    return path


def _loop(tmp_path):
    path = tmp_path / "loop"
    path.symlink_to(path)
    return path


def _long_component(tmp_path):
    return tmp_path / ("x" * 300)  # beyond NAME_MAX (255)


def _long_path(tmp_path):
    return tmp_path.joinpath(*["y" * 200] * 25)  # beyond PATH_MAX (4096)


def _dataset_folder_a_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tinyshakespeare").write_text("a file where the folder should be")
    return tmp_path / "data"


DATA_DIRS = {"a file": _file, "a symlink loop": _loop, "a name too long": _long_component,
             "a path too long": _long_path, "a dataset folder that is a file": _dataset_folder_a_file}


@pytest.mark.parametrize("case", DATA_DIRS, ids=list(DATA_DIRS))
def test_unusable_data_dir_is_named_as_data_dir(case, tmp_path):
    data_dir = DATA_DIRS[case](tmp_path)
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, f"data_dir={data_dir}", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    line = assert_refused(result, run_dir, "data_dir")
    assert str(data_dir)[:200] in line and "cannot write the results" not in line


@pytest.mark.parametrize("overrides", [["gpus＝2"], ["optimizer.momentum=0.9"], ["algorithm=backprop,ddg"],
                                       ["timeout_s=inf"]], ids=["lexer", "key", "sweep", "range"])
def test_hydra_full_error_does_not_change_the_error(overrides, tmp_path):
    lines = set()
    for value in ("0", "1"):
        run_dir = tmp_path / f"run{value}"
        result = run_cli([*TINY, *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                         env={"HYDRA_FULL_ERROR": value})
        lines.add(assert_refused(result, run_dir, "error: "))
    assert len(lines) == 1, lines


def test_a_non_ascii_run_directory_works(tmp_path):
    run_dir = tmp_path / "résumé" / "run"
    result = run_cli([*TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "summary.json").exists()

