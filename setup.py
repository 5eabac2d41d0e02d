"""robot_stack: ament_python package (colcon) that is also pip-installable (editable too)."""

from glob import glob

from setuptools import setup

PACKAGE = "robot_stack"

# Top-level folders that are subpackages of robot_stack (only robot_stack is an import name).
SUBPACKAGE_DIRS = {"drivers": "drivers", "policies": "policies", "sim": "sim", "calibration": "calibration"}


def packages() -> tuple[list[str], dict[str, str]]:
    from setuptools import find_packages

    names, dirs = [PACKAGE], {PACKAGE: PACKAGE}
    names += [f"{PACKAGE}.{p}" for p in find_packages(PACKAGE)]
    for sub, folder in SUBPACKAGE_DIRS.items():
        dirs[f"{PACKAGE}.{sub}"] = folder
        names.append(f"{PACKAGE}.{sub}")
        names += [f"{PACKAGE}.{sub}.{p}" for p in find_packages(folder)]
    return names, dirs


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
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.xml")),
        (f"share/{PACKAGE}/config", glob("config/*.xml") + glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/robots", glob("config/robots/*.yaml")),
        (f"share/{PACKAGE}/config/tasks", glob("config/tasks/*.yaml")),
        (f"share/{PACKAGE}/config/cells", glob("config/cells/*.yaml")),
        (f"share/{PACKAGE}/config/policies", glob("config/policies/*.yaml")),
        (f"share/{PACKAGE}/config/hil", glob("config/hil/*.yaml")),
    ],
    zip_safe=True,
    maintainer="robot_stack developers",
    description="Real-robot learning stack: teleop, recording, diffusion policy, HIL RL, MuJoCo twin, ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [f"robot-stack = {PACKAGE}.cli:main"] + [f"{k} = {v}" for k, v in NODES.items()],
        # lets any zarr reader decode the recorder's JPEG image chunks
        "zarr.codecs": ["robot_stack.jpeg = robot_stack.data.jpeg:JpegCodec"],
    },
)
