"""recorder_node under kill -9 (a small run of benchmarks/recorder_crash.py): at random moments and right
after a save was answered, into one store; nothing committed or acknowledged is lost, nothing is damaged,
the episode in flight comes back up to its last durable step."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_recorder_kill_minus_9(tmp_path: Path) -> None:
    out = tmp_path / "crash.json"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "recorder_crash.py"), "--kills", "4",
                           "--launch-share", "0", "--seed", "3", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert sum(r["kills"].values()) == 4 and r["episodes"] >= 3, r
    assert r["committed_lost"] == 0 and r["acknowledged_lost"] == 0 and r["damaged_episodes"] == 0, r
    assert r["orphans"] == 0, r
    flight = r["in_flight"]["recorder"]
    assert flight["kept"] == flight["kills"], r  # every episode in flight came back (marked recovered)
    assert flight["lost_s_max"] < 1.5, r  # at most the tick latency, a write batch and a pending sync
    assert r["save_answer_ms"]["n"] >= 2, r
