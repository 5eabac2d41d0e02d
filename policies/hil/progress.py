"""The learner's live view of a HIL run: a rich table in a terminal, a log line elsewhere, and the plot.

The run directory holds ``metrics.jsonl`` (one line per finished episode, the in-process loop's
``EpisodeLog`` format) and ``episodes.png`` (success and intervention rate per episode, with a rolling
mean), so ``robot-stack hil plot`` draws either kind of run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RECENT = 20


@dataclass
class Snapshot:
    """What the display shows (filled by the learner node)."""

    episodes: list[Any]
    """``EpisodeLog`` of every finished episode."""
    updates: int
    updates_per_s: float
    online: int
    demo: int
    transitions: int
    weights_version: int
    rejected: int
    actors: dict[str, Any] = field(default_factory=dict)
    """Actor id -> its latest ``ActorStats``."""
    message: str = ""

    def rates(self) -> tuple[float, float]:
        """(success rate, intervention rate) over the last ``RECENT`` episodes."""
        recent = self.episodes[-RECENT:]
        if not recent:
            return float("nan"), float("nan")
        steps = sum(e.length for e in recent)
        return float(np.mean([e.success for e in recent])), sum(e.intervention_steps for e in recent) / max(steps, 1)


def _pct(x: float) -> str:
    return "-" if x != x else f"{x:.0%}"


def table(s: Snapshot) -> Any:
    from rich.table import Table

    success, interventions = s.rates()
    title = (f"HIL learner: {s.updates} updates ({s.updates_per_s:.1f}/s), weights v{s.weights_version}, "
             f"buffers online {s.online} / demo {s.demo}")
    caption = f"rejected messages: {s.rejected}" + (f" (last: {s.message})" if s.message else "")
    t = Table(title=title, caption=caption)
    for col in ("", "episodes", "success", "interv.", "steps", "weights", "rate", "outbox"):
        t.add_column(col, justify="left" if not col else "right")
    for name, a in sorted(s.actors.items()):
        t.add_row(f"actor {name}", str(a.episodes), _pct(a.successes / a.episodes if a.episodes else float("nan")),
                  _pct(a.intervention_steps / a.steps if a.steps else float("nan")), str(a.steps),
                  f"v{a.weights_version}", f"{a.rate_hz:.1f} Hz", f"{a.outbox}" + (f" -{a.dropped}" if a.dropped else ""))
    t.add_row(f"last {RECENT}", str(min(len(s.episodes), RECENT)), _pct(success), _pct(interventions), "", "", "", "")
    t.add_row("learner", str(len(s.episodes)), "", "", str(s.transitions), f"v{s.weights_version}",
              f"{s.updates_per_s:.1f} upd/s", "")
    return t


def line(s: Snapshot) -> str:
    success, interventions = s.rates()
    return (f"episodes {len(s.episodes)} (success {_pct(success)}, interventions {_pct(interventions)} over the last "
            f"{RECENT}), transitions {s.transitions}, buffers online {s.online} demo {s.demo}, updates {s.updates} "
            f"({s.updates_per_s:.1f}/s), weights v{s.weights_version}, rejected messages {s.rejected}")


class Display:
    """A rich live table when ``live`` (default: stdout is a terminal), else a log line every ``log_s``."""

    def __init__(self, log: Any, live: bool | None = None, log_s: float = 10.0):
        self.log, self.log_s, self.last_log = log, log_s, 0.0
        self.live = None
        if live if live is not None else sys.stdout.isatty():
            from rich.live import Live

            self.live = Live(refresh_per_second=2, transient=False)
            self.live.start()

    def update(self, s: Snapshot) -> None:
        if self.live is not None:
            self.live.update(table(s))
        elif time.monotonic() - self.last_log >= self.log_s:
            self.last_log = time.monotonic()
            self.log(line(s))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()


def read_metrics(path: str | Path, limit: int | None = None) -> list[Any]:
    """``EpisodeLog`` records of a run's ``metrics.jsonl`` (the first ``limit`` ones)."""
    from robot_stack.policies.hil.loop import EpisodeLog

    path = Path(path)
    if not path.is_file():
        return []
    logs = [EpisodeLog(**json.loads(text)) for text in path.read_text().splitlines() if text.strip()]
    return logs[:limit] if limit is not None else logs


def write_metrics(path: str | Path, logs: list[Any]) -> None:
    """Rewrite ``metrics.jsonl`` atomically."""
    from dataclasses import asdict

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text("".join(json.dumps(asdict(e)) + "\n" for e in logs))
    os.replace(tmp, path)


def plot(logs: list[Any], path: str | Path, title: str = "") -> Path:
    """Per-episode intervention rate (bars) and success (dots), with rolling means, against episodes."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from robot_stack.policies.hil.loop import rolling

    eps = [e for e in logs if e.kind == "train"]
    x = np.arange(1, len(eps) + 1)
    rate = np.array([e.intervention_rate for e in eps])
    success = np.array([float(e.success) for e in eps])
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.bar(x, rate, color="tab:orange", alpha=0.45, label="intervention rate (episode)")
    ax.plot(x, rolling(list(rate), RECENT), color="tab:orange", label=f"intervention rate (last {RECENT})")
    ax.scatter(x, success, s=10, color="tab:blue", label="success (episode)")
    ax.plot(x, rolling(list(success), RECENT), color="tab:blue", label=f"success rate (last {RECENT})")
    ax.set(xlabel="episode", ylabel="rate", ylim=(-0.05, 1.05), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
    return path
