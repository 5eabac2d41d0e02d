"""robot_stack: a real-robot learning stack on one ROS 2 interface contract for sim and hardware."""

__version__ = "0.1.0"
