"""A binary (non-UTF-8) file where a robot profile or a checkpoint's metadata belongs: one line, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_stack.cli import main
from robot_stack.policies.diffusion.synthetic import write_store

BINARY = bytes(range(256)) * 4  # not UTF-8 (0x80 cannot start a character)


def _one_line(capsys: pytest.CaptureFixture, expected: str) -> None:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in err, err


def test_binary_robot_profile(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    profile = tmp_path / "robot.yaml"
    profile.write_bytes(BINARY)
    assert main(["profile", str(profile)]) == 2
    _one_line(capsys, f"{profile}: not a YAML text file (invalid UTF-8 at byte 128)")


@pytest.mark.parametrize("command", ["finetune", "eval"])
def test_binary_checkpoint_metadata(command: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_bytes(BINARY)
    (checkpoint / "model.safetensors").write_bytes(b"")  # never read: the metadata is refused first
    if command == "finetune":
        store = write_store(tmp_path / "d.zarr", n_episodes=2, length=20)
        argv = ["train", "diffusion", "--data", str(store), "--out", str(tmp_path / "run"), "--finetune", str(checkpoint)]
    else:
        argv = ["eval", "--policy", str(checkpoint), "--episodes", "1"]
    assert main(argv) == 2
    _one_line(capsys, f"{checkpoint / 'config.json'}: not a diffusion policy checkpoint's metadata (not UTF-8 text")
