"""``robot-stack calibrate {intrinsics,handeye,arm,latency}``: offline from saved files, or live from topics."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from robot_stack.cli import add_command
from robot_stack.errors import UserError

CAL = Path("calibration")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = add_command(
        subparsers, "calibrate", "calibrate cameras (intrinsics, hand-eye), servo arm joints and latency",
        "Calibration files make the twin match the hardware: camera intrinsics (camera_info), camera poses\n"
        "(hand-eye), servo joint offsets/directions/ranges and measured latencies. Each command works offline\n"
        "on saved captures, or live on the contract topics of a running robot or twin. See docs/calibration.md.")
    sub = parser.add_subparsers(dest="calibrate_command", metavar="<what>")
    parser.set_defaults(handler=lambda _a: parser.print_help() or 0)

    p = add_command(sub, "intrinsics", "camera intrinsics from checkerboard/ChArUco images",
                    "Solve fx, fy, cx, cy and distortion with OpenCV from board images and write the\n"
                    "camera_calibration_parsers YAML (point the profile's cameras[].intrinsics at it).\n"
                    "Live: views are kept automatically whenever the whole board is seen somewhere new.")
    _common(p, camera=True)
    _board_args(p)
    p.add_argument("--images", help="folder of board images (offline); without it, capture live from the camera topic")
    p.add_argument("--views", type=int, default=20, help="live: views to capture")
    p.add_argument("--min-views", type=int, default=8, help="fewest views with the board to accept")
    p.set_defaults(handler=_intrinsics)

    p = add_command(sub, "handeye", "camera pose on the gripper (eye-in-hand) or in the base frame (eye-to-hand)",
                    "Robot poses come from the joint angles through the MJCF forward kinematics, board poses from\n"
                    "solvePnP; five AX=XB solvers (tsai, park, horaud, andreff, daniilidis) are compared.\n"
                    "Live: move the arm (teleop, or by hand) to 15-20 poses with different wrist angles; a view is\n"
                    "kept when the arm has stopped at a new pose with the board in view.")
    _common(p, camera=True)
    _board_args(p)
    p.add_argument("--mode", choices=["eye_in_hand", "eye_to_hand"], default="eye_in_hand",
                   help="eye_in_hand: camera on the gripper, board fixed; eye_to_hand: camera fixed, board on the gripper")
    p.add_argument("--captures", help="capture folder with images and joints.yaml (offline); without it, capture live")
    p.add_argument("--intrinsics", help="camera intrinsics YAML (default: the profile's cameras[].intrinsics)")
    p.add_argument("--method", default="park", choices=["tsai", "park", "horaud", "andreff", "daniilidis"],
                   help="solver whose answer is stored")
    p.add_argument("--views", type=int, default=15, help="live: views to capture")
    p.set_defaults(handler=_handeye)

    p = add_command(sub, "arm", "servo-arm joint offsets, directions and ranges (Dynamixel, Feetech)",
                    "Reads raw servo ticks (no calibration) and writes the drivers/servo calibration file.\n"
                    "Interactive: prompts you through the zero pose, the direction step and the range sweep.\n"
                    "--serve: the same steps as std_srvs/Trigger services (calibration/record_zero, ...).")
    _common(p, camera=False)
    p.add_argument("--port", default="", help="serial port (default: the profile's hardware.port)")
    p.add_argument("--directions", choices=["reference", "moved", "profile"], default="reference",
                   help="reference: from a second known pose; moved: you move each joint a little its positive way; "
                        "profile: from the profile's current calibration file")
    p.add_argument("--ranges", choices=["profile", "moved"], default="profile",
                   help="profile: the joint limits mapped to ticks; moved: the extremes you move each joint to")
    p.add_argument("--reference-pose", type=_floats, default=None,
                   help="reference pose, rad, comma list (arm joints then gripper; default: the profile's sim.home)")
    p.add_argument("--serve", action="store_true", help="run as a ROS node with Trigger services instead of prompts")
    p.add_argument("--ros-args", nargs=argparse.REMAINDER, default=[], dest="ros_args",
                   help="--serve: ROS arguments (remaps, parameters; a launch file adds them), passed to rclpy")
    p.set_defaults(handler=_arm)

    p = add_command(sub, "latency", "camera and actuation latency from a commanded step motion",
                    "Live: commands smooth steps of one joint (forward commands on the contract), records joint\n"
                    "states and camera images with their stamps, and finds each stream's delay. Writes the YAML\n"
                    "and <name>.params.yaml for policy_server (execution_latency).")
    _common(p, camera=True, camera_required=False)
    p.add_argument("--recording", help="a saved recording (.npz) to analyse (offline); without it, record live")
    p.add_argument("--joint", default="", help="joint to move (default: the first arm joint)")
    p.add_argument("--amplitude", type=float, default=0.2, help="step size, rad")
    p.add_argument("--duration", type=float, default=4.5, help="recording length, s")
    p.add_argument("--save-recording", default="", help="also save the live recording (.npz) here")
    p.set_defaults(handler=_latency)


def _common(p: argparse.ArgumentParser, *, camera: bool, camera_required: bool = True) -> None:
    p.add_argument("--robot", default="so101", help="robot profile name or YAML path")
    if camera:
        p.add_argument("--camera", required=camera_required, default=None, help="camera name in the profile")
    p.add_argument("--output", "-o", default="", help="file to write (default: under calibration/)")


def _board_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--board", type=_board_size, default=(9, 6), help="board squares COLSxROWS (not inner corners)")
    p.add_argument("--square", type=float, default=0.025, help="square side, m")
    p.add_argument("--charuco", action="store_true", help="a ChArUco board (cv2.aruco) instead of a checkerboard")
    p.add_argument("--marker", type=float, default=0.0, help="ChArUco marker side, m (default 0.7 x square)")
    p.add_argument("--save-captures", default="", help="live: folder for the captured views (default under calibration/captures)")


def _board_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX,]\s*(\d+)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"expected COLSxROWS (squares), e.g. 9x6, got {text!r}")
    return int(m.group(1)), int(m.group(2))


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _make_board(args: argparse.Namespace):
    from robot_stack.calibration.board import Board

    try:
        return Board(*args.board, square=args.square, kind="charuco" if args.charuco else "checkerboard",
                     marker=args.marker)
    except ValueError as err:
        raise UserError(f"--board {args.board[0]}x{args.board[1]}: {err}") from None


def _live_views(args: argparse.Namespace, profile, board, with_joints: bool):
    from rich.console import Console

    from robot_stack.calibration.captures import save_capture
    from robot_stack.calibration.live import LiveStreams, capture_views, default_capture_folder

    console = Console(stderr=True)
    streams = LiveStreams(profile, args.camera, joints=with_joints)
    try:
        streams.wait_ready()
        console.print(f"capturing {args.views} views from {args.camera}: "
                      + ("move the arm to a new pose and hold it still" if with_joints else "move and tilt the board"))
        images, joints = capture_views(streams, board, args.views, with_joints=with_joints,
                                       on_view=lambda k: console.print(f"  view {k}/{args.views}"))
    finally:
        streams.close()
    folder = Path(args.save_captures) if args.save_captures else default_capture_folder(profile.name, args.camera)
    names = save_capture(folder, images, profile if with_joints else None, joints if with_joints else None)
    console.print(f"saved {len(names)} views to {folder} (re-solve offline with --{'captures' if with_joints else 'images'} {folder})")
    return list(zip(names, images)), joints


def _intrinsics(args: argparse.Namespace) -> int:
    from robot_stack.calibration import intrinsics as intr
    from robot_stack.profile import load_profile

    profile = load_profile(args.robot)
    cam = profile.camera(args.camera)
    board = _make_board(args)
    if args.images:
        images = intr.load_images(args.images)
    else:
        images, _ = _live_views(args, profile, board, with_joints=False)
    result = intr.calibrate(images, board, min_views=args.min_views, camera_name=cam.name, progress=True)
    if (result.intrinsics.width, result.intrinsics.height) != (cam.width, cam.height):
        print(f"warning: images are {result.intrinsics.width}x{result.intrinsics.height}, the profile says "
              f"{cam.width}x{cam.height} for camera {cam.name!r}")
    output = Path(args.output) if args.output else CAL / f"{profile.name}_{cam.name}_intrinsics.yaml"
    result.intrinsics.save(output)
    _print_table(f"reprojection error per view (px), camera {cam.name}", ["view", "RMS px"],
                 [(n, f"{e:.3f}") for n, e in result.per_view.items()])
    for name in result.rejected:
        print(f"board not found: {name}")
    print(result.summary())
    print(f"wrote {output} (set cameras[{cam.name}].intrinsics to it in the profile)")
    return 0


def _handeye(args: argparse.Namespace) -> int:
    from robot_stack.calibration import handeye
    from robot_stack.calibration.captures import load_capture
    from robot_stack.camera_info import Intrinsics
    from robot_stack.profile import load_profile

    profile = load_profile(args.robot)
    cam = profile.camera(args.camera)
    board = _make_board(args)
    intrinsics_path = args.intrinsics or (str(profile.resolve(cam.intrinsics)) if cam.intrinsics else "")
    if not intrinsics_path:
        raise UserError(f"camera {cam.name!r} has no intrinsics: pass --intrinsics or calibrate them first "
                        "(robot-stack calibrate intrinsics)")
    intrinsics = Intrinsics.load(intrinsics_path)
    if args.captures:
        images, joints = load_capture(args.captures, profile)
    else:
        images, joints = _live_views(args, profile, board, with_joints=True)
    result, missing = handeye.calibrate_views(profile, args.mode, images, joints, board, intrinsics, cam.frame_id,
                                              method=args.method)
    output = Path(args.output) if args.output else CAL / f"{profile.name}_{cam.name}_extrinsics.yaml"
    handeye.save_extrinsics(result.extrinsics, output)
    rows = [(m, *(f"{v:+.4f}" for v in r.translation), f"{r.residual_rotation_deg:.3f}", f"{r.residual_translation_mm:.2f}")
            for m, r in result.extrinsics.methods.items()]
    _print_table("hand-eye solvers", ["method", "x m", "y m", "z m", "resid deg", "resid mm"], rows)
    for name in missing:
        print(f"board not found: {name}")
    print(result.summary())
    print(f"wrote {output}")
    return 0


def _arm(args: argparse.Namespace) -> int:
    from robot_stack.profile import load_profile

    profile = load_profile(args.robot)
    if args.serve:
        from robot_stack.calibration.node import ArmCalibrationNode, ArmCalibrationOptions
        from robot_stack.node import run_node

        defaults = ArmCalibrationOptions(robot=args.robot, port=args.port or "", output=args.output or "",
                                         directions=args.directions, ranges=args.ranges)
        run_node(lambda: ArmCalibrationNode(defaults))
        return 0
    return _arm_interactive(args, profile)


def _arm_interactive(args: argparse.Namespace, profile) -> int:
    import threading

    import numpy as np

    from robot_stack.calibration.arm import ArmCalibrator, RawBus, check_limits, default_output, profile_calibration
    from robot_stack.drivers.servo.calibration import save_calibration

    names = profile.all_joint_names
    reference = np.array(args.reference_pose if args.reference_pose is not None else
                         (profile.sim.home if profile.sim and profile.sim.home else [0.0] * len(names)))
    bus = RawBus(profile, args.port or None)
    cal = ArmCalibrator(profile, bus.resolutions)
    try:
        _prompt("Support the arm: torque goes off on every servo. Press Enter")
        bus.release()
        _prompt("Move the arm to the ZERO pose (every joint at 0 rad, see docs/calibration.md). Press Enter")
        zero = bus.sample()
        print(cal.record_zero(zero))
        if args.directions == "reference":
            pose = ", ".join(f"{n}={v:+.2f}" for n, v in zip(names, reference))
            _prompt(f"Move the arm to the REFERENCE pose ({pose} rad). Press Enter")
            print(cal.record_reference(bus.sample(), reference))
        elif args.directions == "moved":
            _prompt("From the zero pose, move EVERY joint a little (10-30 deg) in its POSITIVE direction "
                    "(right-hand rule about its axis). Press Enter")
            print(cal.record_moved(zero, bus.sample()))
        if args.ranges == "moved":
            stop = threading.Event()

            def sweep() -> None:
                while not stop.is_set():
                    cal.observe(bus.read_ticks())

            thread = threading.Thread(target=sweep, daemon=True)
            thread.start()
            _prompt("Move EVERY joint slowly through its full range, end to end. Press Enter when done")
            stop.set()
            thread.join(timeout=2)
    finally:
        bus.close()
    fallback = profile_calibration(profile)
    if args.directions == "profile":
        if fallback is None:
            raise UserError(f"robot {profile.name!r} has no calibration file to take directions from")
        directions = [fallback.joints[n].direction for n in names]
    else:
        directions = cal.directions(args.directions, fallback)
    result = cal.build(directions, args.ranges)
    output = Path(args.output) if args.output else default_output(profile)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_calibration(result, output)
    for warning in check_limits(profile, result, bus.resolutions):
        print(f"warning: {warning}")
    _print_table(f"joint calibration, {profile.name}", ["joint", "zero", "direction", "min", "max"],
                 [(n, j.zero, j.direction, j.min, j.max) for n, j in result.joints.items()])
    print(f"wrote {output}")
    return 0


def _prompt(text: str) -> None:
    try:
        input(f"{text} > ")
    except EOFError:
        raise UserError("interactive calibration needs a terminal (or use --serve for Trigger services)") from None


def _latency(args: argparse.Namespace) -> int:
    from robot_stack.calibration import latency
    from robot_stack.profile import load_profile

    profile = load_profile(args.robot)
    if args.recording:
        rec = latency.Recording.load(args.recording)
    else:
        from robot_stack.calibration.live import LiveStreams, record_step_motion

        joint = profile.joint_names.index(args.joint) if args.joint else 0
        if args.joint and args.joint not in profile.joint_names:
            raise UserError(f"--joint {args.joint!r} is not an arm joint of {profile.name!r} "
                            f"({', '.join(profile.joint_names)})")
        streams = LiveStreams(profile, args.camera, commands=True)
        try:
            print(f"moving {profile.joint_names[joint]} by +-{args.amplitude} rad for {args.duration} s ...")
            rec = record_step_motion(streams, joint, args.amplitude, args.duration)
        finally:
            streams.close()
        if args.save_recording:
            rec.save(args.save_recording)
    result = latency.analyse(rec, profile.name)
    output = Path(args.output) if args.output else CAL / f"{profile.name}_latency.yaml"
    params = latency.save_latency(result, output)
    rows = [("actuation", f"{1000 * result.actuation_latency:.1f}", f"{result.fit['actuation']:.4f}")]
    rows += [(f"camera {n}", f"{1000 * v:.1f}", f"{result.fit[n]:.4f}") for n, v in result.camera_latency.items()]
    _print_table("latency", ["stream", "ms", "fit R^2"], rows)
    print(f"wrote {output} and {params} (policy_server: --params-file {params})")
    return 0


def _print_table(title: str, columns: list[str], rows: list[tuple]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    Console().print(table)
