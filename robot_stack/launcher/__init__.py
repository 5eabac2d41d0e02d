"""Run ROS 2 XML launch files (a documented subset of ``ros2 launch``) without launch/launch_ros.

See docs/launch.md. The Python API is :class:`LaunchRunner`; the command is ``robot-stack launch``.
"""

from robot_stack.launcher.runner import LaunchRunner, format_plan, resolve_launch_file

__all__ = ["LaunchRunner", "format_plan", "resolve_launch_file"]
