#!/usr/bin/env bash
# Optional: a separate environment with the real `lerobot` package, to check that
# `robot-stack data export --format lerobot` loads with LeRobotDataset (tests/test_data_lerobot.py uses it)
# and to time LeRobot's DiffusionPolicy beside ours (benchmarks/diffusion_inference.py --peer lerobot).
# lerobot 0.6.1 needs Python >= 3.12 and torch < 2.12, which the project's Python 3.11 + torch 2.13 venv
# cannot host, hence its own venv. About 5.4 GB (PyPI's torch 2.11 is a CUDA build), ~2.5 min to install.
# Idempotent. Environment: LEROBOT_VENV (default .venv-lerobot), PYTHON312 (default: python3.12 on PATH or pyenv's).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LEROBOT_VENV:-.venv-lerobot}
SPEC="lerobot[dataset,diffusion]==0.6.1"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.robot_stack_lerobot" 2>/dev/null)" = "$SPEC" ]; then
  echo "lerobot venv: ready ($VENV)"; exit 0
fi
PY=""
for candidate in ${PYTHON312:-} python3.12 python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[23]*/bin/python3; do
  if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then PY=$candidate; break; fi
done
if [ -z "$PY" ]; then
  echo "lerobot venv: skipped (no Python >= 3.12; set PYTHON312)"; exit 0
fi
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt $((10 * 1024 * 1024)) ]; then
  echo "lerobot venv: skipped (less than 10 GB free)"; exit 0
fi
echo "lerobot venv: installing $SPEC into $VENV with $PY (a few minutes)"
if ! { "$PY" -m venv "$VENV" && "$VENV/bin/python" -m pip --disable-pip-version-check -q install "$SPEC"; }; then
  echo "lerobot venv: install failed; the real-lerobot test will be skipped"; rm -rf "$VENV"; exit 0
fi
echo "$SPEC" > "$VENV/.robot_stack_lerobot"
echo "lerobot venv: ready ($VENV)"
