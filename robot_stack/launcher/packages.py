"""Find ROS packages and their executables the way ``ros2 launch`` does, plus pip installs.

``robot_stack`` itself resolves through :func:`robot_stack.resources.share_dir` (a source checkout
or an installed share directory); other packages through ``ament_index_python`` on
AMENT_PREFIX_PATH. An executable ``<exec>`` of package ``<pkg>`` is ``<prefix>/lib/<pkg>/<exec>``
(colcon layout) or else ``<prefix>/bin/<exec>`` (where pip puts console scripts).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from robot_stack.errors import UserError
from robot_stack.resources import PACKAGE, ros_environment, share_dir


def _ament_prefix(package: str) -> Path | None:
    os.environ.setdefault("AMENT_PREFIX_PATH", ros_environment()["AMENT_PREFIX_PATH"])
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        return Path(get_package_prefix(package))
    except (PackageNotFoundError, LookupError, ValueError):
        return None


def package_prefix(package: str) -> Path:
    prefix = _ament_prefix(package)
    if prefix is not None:
        return prefix
    if package == PACKAGE:
        return Path(sys.prefix)
    raise UserError(f"package {package!r} not found on AMENT_PREFIX_PATH (install it or source its setup file)")


def package_share(package: str) -> Path:
    if package == PACKAGE:
        return share_dir()
    return package_prefix(package) / "share" / package


def find_executable(package: str, executable: str) -> Path:
    prefix = package_prefix(package)
    candidates = [prefix / "lib" / package / executable, prefix / "bin" / executable]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise UserError(
        f"executable {executable!r} of package {package!r} not found (looked for {', '.join(map(str, candidates))})"
    )
