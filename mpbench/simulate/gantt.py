"""One simulated steady step as a picture: a row per worker (and one per communication lane).

Bars are tasks coloured by kind; the trainer's per-step overhead has a colour of its own, so it
is never read as compute; white is idle. A point-to-point message (an activation or a gradient
sent to another worker) is a thin line from the end of the task that sends it, on the sender's
row, to when it arrives, on the receiver's. Beyond `MOST_ROWS` workers the first ones are drawn
and the title says how many of how many.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mpbench.simulate.simulation import Simulated  # noqa: E402

COLOURS = {"forward": "tab:blue", "backward": "tab:orange", "backward_input": "tab:orange",
           "backward_weight": "tab:red", "optimizer": "tab:green", "local": "tab:purple",
           "allreduce": "tab:gray", "overhead": "black"}
MESSAGE_COLOUR = "tab:cyan"
MOST_ROWS = 32  # beyond that the first 32 workers are drawn (the title says so)
MIN_HEIGHT = 2.6  # inches: one worker's row, the title, the axis label and the legend fit


def messages(simulated: Simulated, shown: set[int]) -> list[tuple[tuple[float, int], tuple[float, int]]]:
    """Every point-to-point message that lands in the measured step between shown workers:
    ((sent at, sender), (arrives at, receiver)), times from the step's start."""
    timeline, (lo, hi) = simulated.timeline, simulated.window
    out = []
    for task in timeline.tasks.values():
        receiver = task.lane[0]
        if receiver not in shown or task.group is not None:  # a collective's members wait for each other
            continue
        for key, delay in task.needs:
            sender = timeline.tasks[key].lane[0]
            if sender == receiver or sender not in shown:
                continue
            sent = timeline.end[key]
            arrives = sent + delay
            if arrives >= lo and sent <= hi:
                out.append(((sent - lo, sender), (arrives - lo, receiver)))
    return out


def draw_gantt(simulated: Simulated, title: str, path: Path) -> Path:
    """Every task overlapping the measured steady step, per worker and lane, and the messages
    between the workers drawn; idle is white."""
    timeline, (lo, hi) = simulated.timeline, simulated.window
    workers = timeline.workers
    shown = set(workers[:MOST_ROWS])
    lanes = sorted({t.lane for t in timeline.tasks.values() if t.lane[0] in shown},
                   key=lambda lane: (lane[0], lane[1] != "compute"))
    row_of = {lane: row for row, lane in enumerate(lanes)}
    bars: dict[int, list[tuple[tuple[float, float], str]]] = {row: [] for row in row_of.values()}
    for task in timeline.tasks.values():  # one pass, one bar collection per row: 512 workers draw in seconds
        start, end = timeline.start[task.key], timeline.end[task.key]
        if task.lane not in row_of or end <= lo or start >= hi or task.seconds <= 0:
            continue
        bars[row_of[task.lane]].append(((max(start, lo) - lo, min(end, hi) - max(start, lo)),
                                        COLOURS.get(task.kind, "black")))
    fig, ax = plt.subplots(figsize=(10, max(MIN_HEIGHT, 1.2 + 0.35 * len(lanes))))
    for row, segments in bars.items():
        if segments:
            ax.broken_barh([span for span, _ in segments], (row - 0.4, 0.8),
                           facecolors=[colour for _, colour in segments], edgecolor="white", linewidth=0.3)
    sent = messages(simulated, shown)
    if sent:
        compute_row = {lane[0]: row for lane, row in row_of.items() if lane[1] == "compute"}
        ax.add_collection(LineCollection([[(t0, compute_row[a]), (t1, compute_row[b])] for (t0, a), (t1, b) in sent],
                                         colors=MESSAGE_COLOUR, linewidths=0.8, alpha=0.8, zorder=3))
    ax.set_yticks(range(len(lanes)), [f"w{w}" + (" comm" if kind == "comm" else "") for w, kind in lanes])
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # the first worker on top
    ax.set_xlim(0, hi - lo)
    ax.set_xlabel("seconds into one steady step (simulated)")
    capped = f"; first {len(shown)} of {len(workers)} workers shown" if len(shown) < len(workers) else ""
    ax.set_title(f"{title} (simulated{capped})")
    used = sorted({t.kind for t in timeline.tasks.values() if t.kind in COLOURS and t.seconds > 0})
    handles = [Patch(color=COLOURS[k], label=k) for k in used]
    if sent:
        handles.append(Line2D([], [], color=MESSAGE_COLOUR, linewidth=0.8, label="message"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
