"""Progress lines say where training is: each line's loss is the training loss of the step it
counts (not the last evaluation's, as it once was), and the evaluation it shows is labelled with
the step it was taken at."""

from __future__ import annotations

import io
import re

from tqdm import tqdm

from mpbench.progress import PlainProgress, Progress
from tests.cli import TINY, read_metrics, run_cli

LINE = re.compile(r"^train: step (\d+)/(\d+) loss=(\S+)(?: (eval(?:@\d+)?)=(\S+))?$")


def test_each_progress_line_shows_its_own_steps_training_loss(tmp_path):
    """A run's plain progress lines (stderr is not a terminal here) against its metrics.jsonl."""
    run_dir = tmp_path / "run"
    result = run_cli([*TINY, "steps=6", "eval_every=3", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [LINE.match(line) for line in result.stderr.splitlines() if line.startswith("train: step")]
    assert all(lines), result.stderr
    rows = {row["step"]: row for row in read_metrics(run_dir)}
    shown = {int(m[1]): m for m in lines}
    assert sorted(shown) == [1, 2, 3, 4, 5, 6]
    for step, match in shown.items():
        assert match[3] == f"{rows[step]['train_loss']:.3f}", (step, match[0])
    # Steps 4 and 5 come after the evaluation at step 3: their own losses, step 3's evaluation.
    assert len({shown[s][3] for s in (3, 4, 5)}) == 3, result.stderr
    assert shown[3][4] == "eval" and shown[4][4] == shown[5][4] == "eval@3"
    assert shown[4][5] == f"{rows[3]['eval_loss']:.3f}"
    assert shown[6][4] == "eval" and shown[6][5] == f"{rows[6]['eval_loss']:.3f}"
    assert shown[1][4] is None  # no evaluation yet


def test_the_terminal_bar_shows_the_same_postfix():
    stream = io.StringIO()
    progress = Progress(tqdm(total=3, file=stream, desc="train", mininterval=0))
    progress.step_done(1, 2.5)
    progress.step_done(2, 2.25, eval_loss=2.4)
    progress.step_done(3, 2.125)
    progress.close()
    assert "loss=2.125, eval@2=2.400" in stream.getvalue()


def test_plain_lines_come_every_tenth_of_the_run_and_at_the_end():
    stream = io.StringIO()
    progress = Progress(PlainProgress(total=25, initial=0, stream=stream))
    for step in range(1, 26):
        progress.step_done(step, 1.0 / step)
    assert [line.split()[2] for line in stream.getvalue().splitlines()] == ["2/25", "4/25", "6/25", "8/25", "10/25",
                                                                          "12/25", "14/25", "16/25", "18/25",
                                                                          "20/25", "22/25", "24/25", "25/25"]
    assert stream.getvalue().splitlines()[-1] == "train: step 25/25 loss=0.040"
