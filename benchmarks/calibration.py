"""Calibration accuracy and cost on MuJoCo renders with known ground truth.

For several seeds: intrinsics (fx/cx error, RMS), hand-eye eye-in-hand and eye-to-hand (translation
and rotation error of each of the five solvers, with ideal intrinsics), and latency (injected 100 ms
camera / 40 ms actuation delay). Prints median figures and solve times (rendering excluded).

    .venv/bin/python benchmarks/calibration.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="repetitions with different random views")
    args = parser.parse_args()

    from robot_stack.calibration import handeye, intrinsics
    from robot_stack.calibration.board import Board
    from robot_stack.calibration.geometry import rotation_angle
    from robot_stack.calibration.latency import Recording, analyse, downsample, step_profile
    from robot_stack.calibration.synthetic import BoardScene, RobotBoardScene, handeye_capture, look_at
    from robot_stack.camera_info import Intrinsics
    from robot_stack.profile import load_profile

    board = Board(9, 6, 0.02)
    profile = load_profile("so101")
    rows: list[tuple[str, str, str, str]] = []

    # intrinsics
    fx_err, cx_err, rms, times = [], [], [], []
    scene = BoardScene(board, 640, 480, 55.0)
    truth = Intrinsics.from_fovy(640, 480, 55.0)
    try:
        for seed in range(args.seeds):
            views = [(f"{i}", scene.render(p)) for i, p in enumerate(scene.random_views(18, seed=seed))]
            t0 = time.perf_counter()
            result = intrinsics.calibrate(views, board)
            times.append(time.perf_counter() - t0)
            fx_err.append(100 * abs(result.intrinsics.fx / truth.fx - 1))
            cx_err.append(100 * abs(result.intrinsics.cx / truth.cx - 1))
            rms.append(result.rms)
    finally:
        scene.close()
    rows.append(("intrinsics (18 views)", f"fx {np.median(fx_err):.3f} %, cx {np.median(cx_err):.3f} %",
                 f"RMS {np.median(rms):.3f} px", f"{1000 * np.median(times):.0f} ms"))

    # hand-eye
    ideal = Intrinsics.from_fovy(640, 480, 60.0)
    for mode in ("eye_in_hand", "eye_to_hand"):
        errors: dict[str, list[tuple[float, float]]] = {m: [] for m in handeye.METHODS}
        times = []
        for seed in range(args.seeds):
            cap = handeye_capture(profile, mode, board, 16, seed=seed)
            images = [(f"{i}", im) for i, im in enumerate(cap["images"])]
            t0 = time.perf_counter()
            result, _ = handeye.calibrate_views(profile, mode, images, cap["joints"], board, ideal, "cam")
            times.append(time.perf_counter() - t0)
            for m, X in result.per_method.items():
                errors[m].append((1000 * np.linalg.norm(X[:3, 3] - cap["truth"][:3, 3]),
                                  np.degrees(rotation_angle(X[:3, :3].T @ cap["truth"][:3, :3]))))
        for m, e in errors.items():
            e_arr = np.array(e)
            rows.append((f"hand-eye {mode} (16 views), {m}", f"{np.median(e_arr[:, 0]):.2f} mm",
                         f"{np.median(e_arr[:, 1]):.3f} deg", f"{1000 * np.median(times):.0f} ms (all 5)"))

    # latency
    cam_err, act_err, times = [], [], []
    scene = RobotBoardScene(profile, "eye_to_hand", np.eye(4), board, width=160, height=120)
    try:
        scene.set_mocap(look_at(np.array([0.55, 0.35, 0.45]), np.array([0.15, 0.0, 0.1])))
        home = np.array(profile.sim.home[:5])
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            t_cmd, offset = step_profile(2.8, 0.3)
            t_joint = np.arange(0, 2.8, 0.01)
            q_joint = home[0] + np.interp(t_joint - 0.04, t_cmd, offset, left=0.0)
            t_true = np.arange(0, 2.8, 0.05) + rng.uniform(0, 0.004, 56)
            frames = []
            for t in t_true:
                q = home.copy()
                q[0] += np.interp(t - 0.04, t_cmd, offset, left=0.0)
                scene.set_joints(q)
                frames.append(downsample(scene.render(show_robot=True)))
            rec = Recording(0, t_cmd, home[0] + offset, t_joint, q_joint, {"front": (t_true + 0.1, np.array(frames))})
            t0 = time.perf_counter()
            cal = analyse(rec, profile.name)
            times.append(time.perf_counter() - t0)
            cam_err.append(1000 * abs(cal.camera_latency["front"] - 0.1))
            act_err.append(1000 * abs(cal.actuation_latency - 0.04))
    finally:
        scene.close()
    rows.append(("latency (100 ms camera, 40 ms actuation)", f"camera {np.median(cam_err):.2f} ms",
                 f"actuation {np.median(act_err):.2f} ms", f"{1000 * np.median(times):.0f} ms"))

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"median over {args.seeds} seeds; errors against MuJoCo ground truth")
    widths = [max(len(r[i]) for r in rows + [("case", "error", "error", "solve time")]) for i in range(4)]
    header = ("case", "error", "error", "solve time")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
