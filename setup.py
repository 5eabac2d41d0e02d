"""robot_stack: ament_python package (colcon, plain or --symlink-install) that is also pip-installable (editable too)."""

import os

from setuptools import find_packages, setup

PACKAGE = "robot_stack"

# Top-level folders that are subpackages of robot_stack (only robot_stack is an import name).
# No self-mapping of robot_stack: `colcon build --symlink-install` rejects one (and then finds these
# folders through robot_stack/__init__.py, which adds the source root to the package's path).
SUBPACKAGE_DIRS = {"drivers": "drivers", "policies": "policies", "sim": "sim", "calibration": "calibration"}


def packages() -> tuple[list[str], dict[str, str]]:
    source = os.path.dirname(os.path.realpath(__file__))  # colcon --symlink-install runs a symlink of it
    names, dirs = [PACKAGE], {}
    names += [f"{PACKAGE}.{p}" for p in find_packages(PACKAGE)]
    for sub, folder in SUBPACKAGE_DIRS.items():
        if not os.path.isdir(folder):
            folder = os.path.relpath(os.path.join(source, folder))
        dirs[f"{PACKAGE}.{sub}"] = folder
        names.append(f"{PACKAGE}.{sub}")
        names += [f"{PACKAGE}.{sub}.{p}" for p in find_packages(folder)]
    return names, dirs


def data_files() -> list[tuple[str, list[str]]]:
    """Everything the nodes read at run time, under share/robot_stack with the source tree's layout.

    launch/ and config/ whole, and the calibration YAML that robot profiles name relatively
    (config/robots/so101.yaml -> ../../calibration/so101_follower.yaml).
    """
    files: dict[str, list[str]] = {}
    for top, keep in (("launch", ".launch.xml"), ("config", ""), ("calibration", ".yaml")):
        for folder, _, names in sorted(os.walk(top)):
            for name in sorted(names):
                if name.endswith(keep) and not name.endswith(".pyc"):
                    files.setdefault(f"share/{PACKAGE}/{folder}", []).append(os.path.join(folder, name))
    return [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *sorted(files.items()),
    ]


NODES = {
    # executable name -> module:function (ROS nodes; colcon installs them to lib/robot_stack)
    "twin_node": "robot_stack.sim.twin_node:main",
    "expert_node": "robot_stack.sim.expert_node:main",
    "topic_probe": "robot_stack.tools.topic_probe:main",
    "recorder_node": "robot_stack.data.recorder:main",
    "realsense_node": "robot_stack.drivers.camera.realsense_node:main",
    "opencv_camera_node": "robot_stack.drivers.camera.opencv_node:main",
    "servo_arm_node": "robot_stack.drivers.servo.node:main",
    "servo_bus_emulator": "robot_stack.drivers.servo.emulator:main",
    "cell_harness": "robot_stack.sim.cell.harness_node:main",
    "teleop_node": "robot_stack.drivers.teleop.node:main",
    "policy_server": "robot_stack.policies.server:main",
    "hil_actor": "robot_stack.policies.hil.actor_node:main",
    "hil_learner": "robot_stack.policies.hil.learner_node:main",
}

names, dirs = packages()
setup(
    name=PACKAGE,
    version="0.1.0",
    packages=names,
    package_dir=dirs,
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.26",
        "pyyaml>=6",
        "rich>=13",
        "tqdm>=4.66",
        "mujoco>=3.3,<4",
        "mink>=1.0",
        "gymnasium>=1.0",
        "torch>=2.4",
        "diffusers>=0.30",
        "safetensors>=0.4",
        "msgpack>=1.0",
        "zarr>=3.0,<4",
        "numcodecs>=0.15",
        "opencv-python-headless>=4.9",
        "imageio>=2.34",
        "imageio-ffmpeg>=0.5",
        "matplotlib>=3.8",
        "pyserial>=3.5",
        "dynamixel-sdk>=3.7",
    ],
    data_files=data_files(),
    zip_safe=False,
    maintainer="robot_stack developers",
    description="Real-robot learning stack: teleop, recording, diffusion policy, HIL RL, MuJoCo twin, ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"robot-stack = {PACKAGE}.cli:main"] + [f"{k} = {v}" for k, v in NODES.items()],
        # lets any zarr reader decode JPEG image chunks of stores written under the older codec name
        "zarr.codecs": ["robot_stack.jpeg = robot_stack.data.jpeg:LegacyJpegCodec"],
    },
)
