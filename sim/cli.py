"""``robot-stack sim``: run the MuJoCo twin (the twin_node) from the command line."""

from __future__ import annotations

import argparse

from robot_stack.cli import add_command


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "sim", help="run the MuJoCo twin of a robot behind the ROS 2 contract",
        description=(
            "Run the MuJoCo twin: the robot profile's arm, cameras and a task scene, serving the same\n"
            "topics and services as the hardware drivers (joint_states, commands, cameras, reset,\n"
            "task_success, pause). Drive it with a policy, a teleop device or the scripted expert\n"
            "(sim.launch.xml expert:=true). Example:\n\n"
            "  robot-stack sim --robot so101 --task pick_cube --cameras front"),
    )
    parser.add_argument("--robot", default="so101", help="robot profile name (config/robots) or YAML path")
    parser.add_argument("--task", default="pick_cube", help="task name (reach, pick_cube, push) or YAML path; '' for none")
    parser.add_argument("--cameras", default="all", help="comma list of profile cameras to render, 'all' or 'none'")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial scene and of the next reset")
    parser.add_argument("--realtime-factor", type=float, default=1.0,
                        help="1 = real time; other values pace sim time and publish /clock; 0 = as fast as possible")
    parser.add_argument("--viewer", action="store_true", help="open the MuJoCo viewer (needs a display)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import os

    # the viewer needs a window system (GLFW); headless rendering uses EGL
    os.environ.setdefault("MUJOCO_GL", "glfw" if args.viewer and os.environ.get("DISPLAY") else "egl")
    from robot_stack.errors import UserError
    from robot_stack.node import run_node
    from robot_stack.sim.twin_node import TwinNode, TwinOptions

    try:
        options = TwinOptions(robot=args.robot, task=args.task, cameras=args.cameras, seed=args.seed,
                              realtime_factor=args.realtime_factor, headless=not args.viewer)
    except ValueError as err:
        raise UserError(str(err)) from None
    run_node(lambda: TwinNode(options))
    return 0
