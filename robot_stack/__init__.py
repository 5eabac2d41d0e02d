"""robot_stack: a real-robot learning stack on one ROS 2 interface contract for sim and hardware."""

import os as _os

__version__ = "0.1.0"

# drivers/, policies/, sim/ and calibration/ are subpackages that live at the top of the source tree
# (setup.py maps them). An install or a pip editable install maps them itself; a source tree used in
# place (colcon --symlink-install runs `setup.py develop`, which ignores the mapping) finds them here.
_source_root = _os.path.dirname(_os.path.dirname(_os.path.realpath(__file__)))
if _os.path.isfile(_os.path.join(_source_root, "package.xml")) and _source_root not in __path__:
    __path__.append(_source_root)

# Headless machines render MuJoCo through EGL; MuJoCo reads this once, when it is first imported.
if not _os.environ.get("DISPLAY"):
    _os.environ.setdefault("MUJOCO_GL", "egl")
