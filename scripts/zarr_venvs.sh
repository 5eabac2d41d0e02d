#!/usr/bin/env bash
# Optional: two small environments with the field's own zarr readers and no robot_stack, to check that our
# stores and exports open there (tests/test_data_readers.py uses them; they skip without them).
#   .venv-zarr2  Python 3.9, zarr 2.12.0 + numcodecs 0.10.2 + imagecodecs 2022.9.26: the versions diffusion_policy
#                pins (conda_environment.yaml), for `data export --format zarr2` (~230 MB)
#   .venv-zarr3  Python >= 3.12, zarr 3.4.2 + imagecodecs-zarr 2026.10.10: a generic zarr 3 reader, for the store's
#                JPEG images (codec imagecodecs_jpeg) (~200 MB; imagecodecs-zarr needs Python >= 3.12, zarr >= 3.2)
# Idempotent; about 2-3 minutes the first time. Environment: PYTHON39, PYTHON312 (default: pyenv's or PATH's).
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {  # $1: minimum minor version, $2: maximum minor version, then candidates
  local lo=$1 hi=$2; shift 2
  for candidate in "$@"; do
    if [ -n "$candidate" ] && "$candidate" -c "import sys; assert (3, $lo) <= sys.version_info[:2] <= (3, $hi)" 2>/dev/null; then
      echo "$candidate"; return
    fi
  done
}

make_venv() {  # $1: folder, $2: python, rest: pinned requirements
  local venv=$1 py=$2; shift 2
  local spec="$*"
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.robot_stack_spec" 2>/dev/null)" = "$spec" ]; then
    echo "zarr venvs: $venv ready"; return
  fi
  if [ -z "$py" ]; then
    echo "zarr venvs: $venv skipped (no suitable Python)"; return
  fi
  echo "zarr venvs: installing $spec into $venv with $py"
  rm -rf "$venv"
  if "$py" -m venv "$venv" && "$venv/bin/python" -m pip --disable-pip-version-check -q install "$@"; then
    echo "$spec" > "$venv/.robot_stack_spec"
    echo "zarr venvs: $venv ready"
  else
    echo "zarr venvs: installing $venv failed; its tests will be skipped"; rm -rf "$venv"
  fi
}

PYENV=${PYENV_ROOT:-$HOME/.pyenv}/versions
make_venv .venv-zarr2 "$(find_python 9 9 "${PYTHON39:-}" python3.9 "$PYENV"/3.9*/bin/python3)" \
  zarr==2.12.0 numcodecs==0.10.2 imagecodecs==2022.9.26 numpy==1.26.4
make_venv .venv-zarr3 "$(find_python 12 13 "${PYTHON312:-}" python3.12 python3.13 "$PYENV"/3.1[23]*/bin/python3)" \
  zarr==3.4.2 imagecodecs-zarr==2026.10.10 imagecodecs==2026.10.10 numcodecs==0.17.1 numpy==2.5.5
