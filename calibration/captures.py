"""Capture folders: the images (PNG) of one camera, and the arm's joint angles at each image.

Live capture and offline calibration share this layout, so a live session can be re-solved later::

    <folder>/000.png, 001.png, ...
    <folder>/joints.yaml     # hand-eye only
        robot: so101
        joint_names: [shoulder_pan, ...]      # the profile's arm joints, in order
        views: [{image: 000.png, joints: [0.01, -1.02, ...]}, ...]   # rad
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from robot_stack.calibration.intrinsics import load_images, save_image
from robot_stack.errors import UserError
from robot_stack.profile import RobotProfile
from robot_stack.typed_config import from_dict, load_yaml

JOINTS_FILE = "joints.yaml"


@dataclass(frozen=True)
class View:
    image: str
    joints: tuple[float, ...]


@dataclass(frozen=True)
class JointsFile:
    robot: str
    joint_names: tuple[str, ...]
    views: tuple[View, ...]


def save_capture(folder: str | Path, images: list[np.ndarray], profile: RobotProfile | None = None,
                 joints: list[np.ndarray] | None = None) -> list[str]:
    """Write ``images`` (and, for hand-eye, the arm joints at each) to ``folder``; returns the image names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"{i:03d}.png" for i in range(len(images))]
    for name, image in zip(names, images):
        save_image(folder / name, image)
    if joints is not None and profile is not None:
        data = {"robot": profile.name, "joint_names": profile.joint_names,
                "views": [{"image": n, "joints": [round(float(v), 6) for v in q]} for n, q in zip(names, joints)]}
        (folder / JOINTS_FILE).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
    return names


def load_capture(folder: str | Path, profile: RobotProfile) -> tuple[list[tuple[str, np.ndarray]], np.ndarray]:
    """(named images, joints (n, arm joints)) of a hand-eye capture folder, in view order."""
    folder = Path(folder)
    path = folder / JOINTS_FILE
    if not path.is_file():
        raise UserError(f"{folder}: no {JOINTS_FILE} (the joint angles of each image) in the capture folder")
    jf = from_dict(JointsFile, load_yaml(path), str(path))
    if list(jf.joint_names) != profile.joint_names:
        raise UserError(f"{path}: joint_names {list(jf.joint_names)} do not match robot {profile.name!r} "
                        f"({', '.join(profile.joint_names)})")
    images = dict(load_images(folder))
    out, joints = [], []
    for k, view in enumerate(jf.views):
        if view.image not in images:
            raise UserError(f"{path}: views[{k}]: image {view.image!r} is not in {folder}")
        if len(view.joints) != len(profile.joint_names):
            raise UserError(f"{path}: views[{k}]: expected {len(profile.joint_names)} joint angles, got {len(view.joints)}")
        out.append((view.image, images[view.image]))
        joints.append(view.joints)
    return out, np.array(joints, dtype=float).reshape(len(out), len(profile.joint_names))
