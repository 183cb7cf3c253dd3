"""Training progress on worker 0: a live bar on a terminal, plain lines anywhere else.

A bar redraws itself with carriage returns, which a file or a CI log keeps as one endless line;
there, progress is one plain line every tenth of the run and at every evaluation.

Each line (or the bar's postfix) shows the training loss of the step it counts, and the last
evaluation's loss labelled with the step it was taken at (`eval@200=...`): between evaluations
the training loss moves on while the evaluation stands.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


class PlainProgress:
    """tqdm's update / set_postfix / close, as a line each `every` steps and after evaluations."""

    def __init__(self, total: int, initial: int, stream=None):
        self.total, self.done = total, initial
        self.every = max(1, total // 10)
        self.postfix = ""
        self.stream = stream or sys.stderr

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done % self.every == 0 or self.done == self.total:
            self._say()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: str) -> None:
        values = {**(ordered_dict or {}), **values}
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass

    def _say(self) -> None:
        print(f"train: step {self.done}/{self.total} {self.postfix}".rstrip(), file=self.stream, flush=True)


class Progress:
    """What the trainer reports each finished step to: its training loss, and the last evaluation."""

    def __init__(self, bar):
        self.bar = bar
        self.last_eval: tuple[int, float] | None = None  # (step, eval loss)

    def step_done(self, step: int, loss: float, eval_loss: float | None = None) -> None:
        """Step `step` finished with training loss `loss`; `eval_loss`: it was evaluated too."""
        if eval_loss is not None:
            self.last_eval = (step, eval_loss)
        postfix = {"loss": f"{loss:.3f}"}
        if self.last_eval is not None:
            at, value = self.last_eval
            postfix["eval" if at == step else f"eval@{at}"] = f"{value:.3f}"
        self.bar.set_postfix(postfix, refresh=False)  # drawn by the update below
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress_bar(total: int, initial: int, enabled: bool) -> Progress:
    """What the trainer reports progress to: nothing, a tqdm bar (stderr is a terminal), or plain lines."""
    if enabled and not sys.stderr.isatty():
        return Progress(PlainProgress(total, initial))
    return Progress(tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step",
                         dynamic_ncols=True, leave=True))
