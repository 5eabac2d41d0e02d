"""Where robot_stack's shipped files live (launch files, robot profiles, DDS profile).

In a source checkout (editable install) that is the repository root, so edits to launch and config
files take effect at once; in an installed package (colcon or pip wheel) it is the ament share
directory ``<prefix>/share/robot_stack``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from pathlib import Path

from robot_stack.errors import UserError

PACKAGE = "robot_stack"


@cache
def share_dir() -> Path:
    """The source tree (checkout, editable or colcon --symlink-install), else ``<prefix>/share/robot_stack``
    of the install this module was loaded from (colcon, pip), else the ament index's."""
    here = Path(__file__).resolve()
    source_root = here.parent.parent
    if (source_root / "package.xml").is_file() and (source_root / "config").is_dir():
        return source_root
    installed = here.parents[4] / "share" / PACKAGE  # <prefix>/lib/pythonX.Y/site-packages/robot_stack/
    if (installed / "package.xml").is_file():
        return installed
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception:  # noqa: BLE001 - any failure means "not installed"
        raise UserError(f"cannot find the {PACKAGE} share directory; reinstall with scripts/setup.sh") from None


def find_config(kind: str, name: str, suffix: str = ".yaml") -> Path:
    """A shipped config by name (``config/<kind>/<name>.yaml``) or a user's file by path."""
    candidate = Path(name).expanduser()
    if candidate.suffix or os.sep in name:
        if candidate.is_file():
            return candidate
        raise UserError(f"{name}: file not found")
    folder = share_dir() / "config" / kind
    path = folder / f"{name}{suffix}"
    if path.is_file():
        return path
    known = sorted(p.stem for p in folder.glob(f"*{suffix}"))
    raise UserError(f"unknown {kind[:-1] if kind.endswith('s') else kind} {name!r} (known: {', '.join(known) or 'none'}; or give a path)")


def resolve_path(path: str, relative_to: Path) -> Path:
    """Resolve a path named in a config: absolute, ``pkg://<python package>/<path>``, or relative."""
    if path.startswith("pkg://"):
        package, _, rest = path[len("pkg://"):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"{path}: Python package {package!r} is not installed (pip install it)")
        return Path(list(spec.submodule_search_locations)[0]) / rest
    p = Path(path).expanduser()
    return p if p.is_absolute() else (relative_to / p)


def fastdds_profile(peers: bool = False) -> Path:
    """The shipped Fast DDS profile: this host only (loopback UDP + shared memory), or with named peers."""
    return share_dir() / "config" / ("fastdds_peers.xml" if peers else "fastdds.xml")


def _network_exposure(env: dict[str, str]) -> None:
    """This host only, unless ROS_STATIC_PEERS names other machines (opt-in).

    By default the loopback profile confines every socket to 127.0.0.1 and shared memory; the discovery
    range LOCALHOST is then run as SUBNET, because rmw_fastrtps's LOCALHOST mode adds a UDP transport
    of its own bound to 0.0.0.0 (reachable from the network) while the profile already keeps discovery
    on this host. With ROS_STATIC_PEERS (ROS 2's own variable: host names or addresses separated by
    ';'), the peers profile (UDP on every interface) and the range LOCALHOST: discovery reaches this
    host and the named machines, never the whole subnet. A profile the user set is left alone.
    """
    if "FASTDDS_DEFAULT_PROFILES_FILE" in env:
        return
    peers = bool(env.get("ROS_STATIC_PEERS", "").strip(" ;"))
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(fastdds_profile(peers))
    if peers:
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    elif env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() in ("", "LOCALHOST"):
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"


def ros_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for ROS processes and the CLI: ament prefix, RMW, the DDS profile (this host only
    unless ROS_STATIC_PEERS names peers: :func:`_network_exposure`), OpenMP.

    Values the user already set win, except that ``sys.prefix`` is always on AMENT_PREFIX_PATH and
    its ``bin`` on PATH.
    """
    env = dict(os.environ if base is None else base)
    prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in prefixes:
        prefixes.append(sys.prefix)  # the ROS base of this environment: overlays (colcon installs) win
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(prefixes)
    bin_dir = str(Path(sys.prefix) / "bin")  # console scripts of this environment (pip installs)
    paths = env.get("PATH", os.defpath).split(os.pathsep)
    if bin_dir not in paths:
        env["PATH"] = os.pathsep.join([bin_dir, *paths])
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    _network_exposure(env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # OpenMP (torch) workers sleep instead of spinning while they wait: next to other busy processes
    # (nodes, the twin, a recorder, training) spinning fell off a cliff here, image training on 2
    # cores from 7.6 to 0.3 steps/s with two busy neighbours, against 5 steps/s with sleeping workers.
    # Export OMP_WAIT_POLICY=ACTIVE on a machine with cores to spare for the lowest latency.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def apply_ros_environment() -> None:
    """Set :func:`ros_environment` in this process (call before ``rclpy.init``)."""
    os.environ.update(ros_environment())
