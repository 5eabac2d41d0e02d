"""robot_stack: a real-robot learning stack on one ROS 2 interface contract for sim and hardware."""

import os as _os

__version__ = "0.1.0"

# Headless machines render MuJoCo through EGL; MuJoCo reads this once, when it is first imported.
if not _os.environ.get("DISPLAY"):
    _os.environ.setdefault("MUJOCO_GL", "egl")
