"""Entry-point plumbing shared by every robot_stack ROS node.

``run_node(factory)`` sets the ROS environment, initialises rclpy with the process arguments
(``--ros-args`` from a launch file included), builds the node, spins it and shuts down cleanly on
Ctrl-C/SIGTERM (an error from a callback caught mid-shutdown is part of the shutdown, not a
failure). A ``UserError`` raised while building or running becomes one log line and exit 2.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import Any

from robot_stack.errors import UserError
from robot_stack.resources import apply_ros_environment


def run_node(factory: Callable[[], Any]) -> None:
    apply_ros_environment()
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    rclpy.init(args=sys.argv)
    # SIGTERM (from a launch runner or systemd) shuts down like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    node = None
    code = 0
    try:
        node = factory()
        executor = SingleThreadedExecutor()  # every node's callbacks are short and non-blocking
        executor.add_node(node)
        executor.spin()
    except UserError as err:
        print(f"[{getattr(node, 'get_name', lambda: 'robot_stack')()}] error: {err}", file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # shutting down (Ctrl-C, SIGTERM): a callback that was running when the context went
        # away fails to publish or wait; that is the shutdown, not an error
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(code)


def declare(node: Any, name: str, default: Any, description: str = "") -> Any:
    """Declare a ROS parameter with a description and return its value."""
    from rcl_interfaces.msg import ParameterDescriptor

    return node.declare_parameter(name, default, ParameterDescriptor(description=description)).value
