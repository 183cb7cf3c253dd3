"""The catalogue of bad input through run.py: config keys, files and the environment. Each gives
one line naming the key or file and what is valid, exit code 2, and no record claiming success."""

from __future__ import annotations

import pytest

from tests.cli import TINY, run_cli

CASES = {
    "unknown algorithm": (["algorithm=nope"], "algorithm"),
    "unknown model": (["model=nope"], "model"),
    "unknown dataset": (["dataset=nope"], "dataset"),
    "zero workers": (["gpus=0"], "gpus"),
    "backprop on two workers": (["gpus=2"], "data_parallel"),
    "batch not divisible by workers": (["algorithm=data_parallel", "gpus=3"], "batch_size"),
    "unknown config key": (["no_such_key=1"], "no_such_key"),
    "unknown nested key": (["+optimizer.nope=1"], "optimizer.nope"),
    "wrong type": (["steps=many"], "steps"),
    "bad dtype": (["dtype=float8"], "dtype"),
    "2bw micro-batches not dividing the batch": (["algorithm=pipedream_2bw", "algorithm.microbatches=3"],
                                                 "microbatches"),
    "2bw with no stage": (["algorithm=pipedream_2bw", "algorithm.stages=0"], "algorithm.stages"),
    "2bw emulated on two workers": (["algorithm=pipedream_2bw", "gpus=2", "algorithm.runtime=emulated"], "gpus=1"),
    "2bw stages not matching the workers": (["algorithm=pipedream_2bw", "gpus=2", "algorithm.stages=3"], "gpus=3"),
    "2bw workers with fewer micro-batches than stages": (["algorithm=pipedream_2bw", "gpus=2",
                                                          "algorithm.microbatches=1"], "microbatches >= stages"),
    "2bw more stages than blocks": (["algorithm=pipedream_2bw", "algorithm.stages=9"], "4 blocks"),
    "async nesterov momentum of one": (["algorithm=async_nesterov", "gpus=2", "algorithm.momentum=1"], "momentum"),
    "async nesterov look-ahead without momentum": (["algorithm=async_nesterov", "gpus=2", "algorithm.momentum=null",
                                                    "optimizer=sgd", "optimizer.momentum=0"], "algorithm.momentum"),
    "diloco with no inner step": (["algorithm=diloco", "gpus=2", "algorithm.inner_steps=0"], "inner_steps"),
    "diloco outer momentum of one": (["algorithm=diloco", "gpus=2", "algorithm.outer_momentum=1"], "outer_momentum"),
    "diloco nesterov without momentum": (["algorithm=diloco", "gpus=2", "algorithm.outer_momentum=0"],
                                         "outer_nesterov"),
    "diloco replicas not matching the workers": (["algorithm=diloco", "gpus=2", "algorithm.replicas=3"],
                                                 "algorithm.replicas"),
    "diloco emulated without replicas": (["algorithm=diloco", "algorithm.runtime=emulated"], "algorithm.replicas"),
    "diloco emulated on two workers": (["algorithm=diloco", "gpus=2", "algorithm.runtime=emulated",
                                        "algorithm.replicas=2"], "gpus=1"),
    "diloco partitions not dividing gpus": (["algorithm=diloco", "gpus=3", "algorithm.partitions=2"], "partitions"),
    "autocast from float64 weights": (["autocast=true", "dtype=float64"], "dtype=float32"),
    "autocast not a boolean": (["autocast=bf16"], "autocast"),
    "microbatches not dividing the batch": (["algorithm=pipeline", "gpus=2", "algorithm.microbatches=3"],
                                            "microbatches"),
    "more stages than blocks": (["algorithm=pipeline", "gpus=5"], "4 blocks"),
    "interleaved with one stage per worker": (["algorithm=pipeline", "gpus=2", "algorithm.schedule=interleaved_1f1b"],
                                              "stages_per_worker"),
    "partitions not dividing gpus": (["algorithm=hypar", "gpus=3", "algorithm.partitions=2"], "partitions"),
    "unknown schedule": (["algorithm=pipeline", "gpus=2", "algorithm.schedule=pipedream"], "schedule"),
    "balance not summing to the blocks": (["algorithm=pipeline", "gpus=2", "algorithm.balance=[1,1]"], "balance"),
    "clip norm not a number": (["optimizer.clip_norm=big"], "optimizer.clip_norm"),
    "non-positive clip norm": (["optimizer.clip_norm=0"], "clip_norm"),
    "unknown semantics": (["algorithm=ddg", "algorithm.semantics=X"], "semantics"),
    "unknown placement": (["algorithm=ddg", "algorithm.placement=star"], "placement"),
    "unknown runtime": (["algorithm=ddg", "algorithm.runtime=threads"], "runtime"),
    "emulated on two workers": (["algorithm=ddg", "algorithm.runtime=emulated", "gpus=2"], "gpus=1"),
    "modules not matching the workers": (["algorithm=ddg", "gpus=2", "algorithm.modules=3"], "gpus=3"),
    "ring modules not matching the workers": (["algorithm=ouroboros", "gpus=2", "algorithm.modules=4"], "gpus=3"),
    "ring of one module": (["algorithm=ouroboros", "algorithm.runtime=emulated", "algorithm.modules=1"],
                           "at least 2"),
    "more modules than blocks": (["algorithm=ddg", "algorithm.runtime=emulated", "algorithm.modules=5"], "4 blocks"),
    "module balance not summing to the blocks": (["algorithm=ouroboros", "gpus=2", "algorithm.balance=[1,1,1]"],
                                                 "balance"),
    "unknown critic loss": (["algorithm=local_critic", "gpus=2", "algorithm.critic_loss=huber"], "critic_loss"),
    "unknown critic target": (["algorithm=local_critic", "gpus=2", "algorithm.critic_target=all"], "critic_target"),
    "critic every zero iterations": (["algorithm=local_critic", "gpus=2", "algorithm.critic_every=0"], "critic_every"),
    "groups not matching the workers": (["algorithm=local_critic", "gpus=2", "algorithm.groups=3"], "gpus=3"),
    "emulated local critic on two workers": (["algorithm=dgl", "gpus=2", "algorithm.runtime=emulated"], "gpus=1"),
    "a critic_convs entry per critic": (["algorithm=local_critic", "gpus=2", "algorithm.critic_convs=[1,2]"],
                                        "critic_convs"),
    "dgl has no critic learning rate": (["algorithm=dgl", "gpus=2", "algorithm.critic_lr=0.1"], "critic_lr"),
    "negative delay": (["algorithm=local_critic", "gpus=2", "algorithm.pipelined=true", "algorithm.delay=-1"], "delay"),
    "sub-model past the last critic": (["algorithm=sub_model_backprop", "algorithm.groups=2", "algorithm.sub_model=2"],
                                       "sub_model"),
    "sub-model without its split": (["algorithm=sub_model_backprop"], "algorithm.groups"),
    "negative checkpoint interval": (["checkpoint_every=-1"], "checkpoint_every"),
    "resume not a boolean": (["resume=maybe"], "resume"),
    "negative divergence patience": (["divergence_patience=-2"], "divergence_patience"),
    "divergence factor not above 1": (["divergence_factor=0.5"], "divergence_factor"),
    "report target not a number": (["report.target=low"], "report.target"),
    "report margin not a fraction": (["report.target_margin=1.5"], "report.target_margin"),
    "critic blocks on a model without Transformer blocks": (["algorithm=local_critic", "gpus=2", "model=custom",
                                                             "model.target=examples.char_mlp:build",
                                                             "algorithm.critic_blocks=1"], "critic_blocks"),
    "dgl has no critic target": (["algorithm=dgl", "gpus=2", "algorithm.critic_target=next"], "critic_target"),
    "a custom model without its function": (["model=custom"], "target"),
    "a custom model whose module does not exist": (["model=custom", "model.target=no_such_package.models:build"],
                                                  "no_such_package"),
    "a custom model whose function does not exist": (["model=custom", "model.target=examples.char_mlp:nope"],
                                                    "nope"),
    "options a custom model does not take": (["model=custom", "model.target=examples.char_mlp:build",
                                              "model.options={nope:1}"], "model.options"),
    "a model for the wrong data": (["model=mlp"], "classification dataset"),
    "checkpoints of an algorithm that cannot take them": (["algorithm=ddg", "algorithm.semantics=H", "gpus=2",
                                                          "checkpoint_every=2"],
                                                         "checkpoint_every"),
}


@pytest.mark.slow  # one process per case
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path):
    overrides, named = CASES[case]
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and named in lines[0]
    assert not (run_dir / "summary.json").exists()


@pytest.mark.slow
def test_missing_dataset_names_the_file(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    result = run_cli([*TINY, "dataset=wikitext2", f"data_dir={empty}", f"hydra.run.dir={tmp_path / 'run'}"],
                     cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "train.txt" in lines[0] and "data_dir" in lines[0], result.stderr


@pytest.mark.slow
def test_env_var_points_at_the_data(tmp_path, shared_data_dir):
    result = run_cli([*TINY, "dataset=ptb", "steps=1", "eval_every=1", f"hydra.run.dir={tmp_path / 'run'}"],
                     cwd=tmp_path, env={"MPBENCH_DATA_DIR": str(shared_data_dir)})
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_unknown_key_lists_the_keys_of_the_chosen_option(tmp_path):
    """A key of another dataset (seq_len is tiny-shakespeare's) names the chosen one's keys only."""
    result = run_cli(["dataset.seq_len=32", "model=mlp", "dataset=fashion_mnist", f"hydra.run.dir={tmp_path / 'run'}"],
                     cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [("error: dataset.seq_len is a key of dataset ptb, tinyshakespeare, wikitext2, not of "
                      "fashion_mnist (the chosen one); valid keys of dataset fashion_mnist: name")]


@pytest.mark.slow
def test_truncated_checkpoint_names_the_file(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli([*TINY, "checkpoint_every=2", f"hydra.run.dir={run_dir}"], cwd=tmp_path).returncode == 0
    (run_dir / "summary.json").unlink()  # as if the run had been killed after its checkpoint
    checkpoint = run_dir / "checkpoints" / "step2" / "rank0.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    result = run_cli([*TINY, "checkpoint_every=2", "resume=true", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(checkpoint) in lines[0] and "resume=true" in lines[0], result.stderr
    assert not (run_dir / "summary.json").exists()


@pytest.mark.slow
def test_results_dir_that_cannot_be_written_names_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    result = run_cli([*TINY, f"hydra.run.dir={blocker / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(blocker) in lines[0] and "hydra.run.dir" in lines[0], result.stderr


@pytest.mark.slow
def test_corrupt_dataset_file_names_it(tmp_path, shared_data_dir):
    data = tmp_path / "data"
    (data / "ptb").mkdir(parents=True)
    for source in (shared_data_dir / "ptb").iterdir():
        (data / "ptb" / source.name).write_bytes(source.read_bytes())
    train = next(p for p in (data / "ptb").iterdir() if "train" in p.name)
    raw = bytearray(train.read_bytes())
    raw[1000] ^= 0xFF
    train.write_bytes(bytes(raw))
    result = run_cli([*TINY, "dataset=ptb", f"data_dir={data}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and train.name in lines[0], result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()
