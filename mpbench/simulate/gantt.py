"""One simulated steady step as a picture: a row per worker (and one per communication lane)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from mpbench.simulate.simulation import Simulated  # noqa: E402

COLOURS = {"forward": "tab:blue", "backward": "tab:orange", "backward_input": "tab:orange",
           "backward_weight": "tab:red", "optimizer": "tab:green", "local": "tab:purple",
           "allreduce": "tab:gray", "overhead": "tab:olive"}
MOST_ROWS = 32  # beyond that the first 32 workers are drawn


def draw_gantt(simulated: Simulated, title: str, path: Path) -> Path:
    """Every task overlapping the measured steady step, per worker and lane; idle is white."""
    timeline, (lo, hi) = simulated.timeline, simulated.window
    lanes = sorted({t.lane for t in timeline.tasks.values() if t.lane[0] < MOST_ROWS},
                   key=lambda lane: (lane[0], lane[1] != "compute"))
    row_of = {lane: row for row, lane in enumerate(lanes)}
    bars: dict[int, list[tuple[tuple[float, float], str]]] = {row: [] for row in row_of.values()}
    for task in timeline.tasks.values():  # one pass, one bar collection per row: 512 workers draw in seconds
        start, end = timeline.start[task.key], timeline.end[task.key]
        if task.lane not in row_of or end <= lo or start >= hi or task.seconds <= 0:
            continue
        bars[row_of[task.lane]].append(((max(start, lo) - lo, min(end, hi) - max(start, lo)),
                                        COLOURS.get(task.kind, "black")))
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.35 * len(lanes)))
    for row, segments in bars.items():
        if segments:
            ax.broken_barh([span for span, _ in segments], (row - 0.4, 0.8),
                           facecolors=[colour for _, colour in segments], edgecolor="white", linewidth=0.3)
    ax.set_yticks(range(len(lanes)), [f"w{w}" + (" comm" if kind == "comm" else "") for w, kind in lanes])
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # the first worker on top
    ax.set_xlim(0, hi - lo)
    ax.set_xlabel("seconds into one steady step (simulated)")
    ax.set_title(f"{title} (simulated)")
    used = sorted({t.kind for t in timeline.tasks.values() if t.kind in COLOURS})
    ax.legend(handles=[Patch(color=COLOURS[k], label=k) for k in used], loc="upper left",
              bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
