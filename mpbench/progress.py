"""Training progress on worker 0: a live bar on a terminal, plain lines anywhere else.

A bar redraws itself with carriage returns, which a file or a CI log keeps as one endless line;
there, progress is one plain line every tenth of the run and at every evaluation.
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

    def set_postfix(self, **values: str) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        pass

    def _say(self) -> None:
        print(f"train: step {self.done}/{self.total} {self.postfix}".rstrip(), file=self.stream, flush=True)


def progress_bar(total: int, initial: int, enabled: bool):
    """What the trainer reports progress to: nothing, a tqdm bar (stderr is a terminal), or plain lines."""
    if enabled and not sys.stderr.isatty():
        return PlainProgress(total, initial)
    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step",
                dynamic_ncols=True, leave=True)
