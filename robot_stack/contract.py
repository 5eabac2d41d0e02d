"""The interface contract: every topic, service, message type and QoS, derived from a profile.

The twin and every hardware backend publish and accept exactly these; policies, teleop devices
and the recorder use exactly these. Names are relative, so a launch file's namespace applies.

=========================================  =====================================  ===========
name                                       type                                   direction
=========================================  =====================================  ===========
``joint_states``                           sensor_msgs/JointState (rad, rad/s,    robot ->
                                           N·m; arm joints then gripper)
``<controller>/joint_trajectory``          trajectory_msgs/JointTrajectory        -> robot
``<controller>/commands``                  std_msgs/Float64MultiArray (rad,       -> robot
                                           profile joint order)
``<gripper_controller>/commands``          std_msgs/Float64MultiArray [position]  -> robot
``ee_pose``                                geometry_msgs/PoseStamped (base frame) robot ->
``cartesian/target_pose``                  geometry_msgs/PoseStamped              -> robot
``cartesian/target_twist``                 geometry_msgs/TwistStamped (m/s,       -> robot
                                           rad/s, base frame)
``<camera>/color/image_raw``               sensor_msgs/Image (stamp = capture)    robot ->
``<camera>/color/camera_info``             sensor_msgs/CameraInfo                 robot ->
``<camera>/depth/image_rect_raw``          sensor_msgs/Image 16UC1 mm / 32FC1 m   robot ->
``<camera>/depth/camera_info``             sensor_msgs/CameraInfo                 robot ->
``object_poses``                           geometry_msgs/PoseArray (base frame;   robot ->
                                           task objects then targets; the twin,
                                           or a perception node on hardware)
``estop``                                  std_msgs/Bool (true engages the stop)  -> robot
``estop/state``                            std_msgs/Bool, latched                 robot ->
``teleop/intervention``                    std_msgs/Bool (human has control)      teleop ->
``/diagnostics``                           diagnostic_msgs/DiagnosticArray        robot ->
``estop/set`` (srv)                        std_srvs/SetBool (true = stop, false = -> robot
                                           release; the stop is latched until then)
``reset`` (srv)                            std_srvs/Trigger (twin: reset scene)   -> robot
``pause`` (srv)                            std_srvs/SetBool                       -> robot
``task_success`` (srv)                     std_srvs/Trigger (twin)                -> robot
``episode/{start,save,discard}`` (srv)     std_srvs/Trigger                       -> recorder
``sim/step_until``                         rosgraph_msgs/Clock, latched (lock-    -> twin
                                           step: sim time the twin may reach
                                           without the policy; simulation only)
=========================================  =====================================  ===========
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from robot_stack.profile import RobotProfile


def qos(depth: int, *, reliable: bool = True, latched: bool = False) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


HARDWARE_KEYS = ("joint_pos", "joint_vel", "ee_pose")
"""Observation keys every robot publishes (joint states; forward kinematics of the measured joints), plus
``<camera>_image`` for each profile camera."""
PRIVILEGED_KEYS = ("object_state",)
"""Observation keys read from the simulator's ground truth: for scoring and for a ``--privileged``
reference policy, never a default input (no robot publishes them without a perception system)."""


def hardware_keys(profile: RobotProfile | None = None) -> list[str]:
    """The observation keys this robot (any robot: ``<camera>_image``) publishes."""
    cameras = [f"{name}_image" for name in profile.camera_names] if profile is not None else ["<camera>_image"]
    return [*HARDWARE_KEYS, *cameras]


def check_deployable(keys: list[str] | tuple[str, ...], profile: RobotProfile | None, privileged: bool,
                     what: str) -> None:
    """One-line UserError when ``keys`` name simulator-only observations and ``privileged`` is not given."""
    from robot_stack.errors import UserError

    sim_only = [k for k in keys if k in PRIVILEGED_KEYS]
    if sim_only and not privileged:
        raise UserError(f"{what} observes {', '.join(sim_only)}, the simulator's ground truth, which no robot "
                        f"publishes; use the keys the robot publishes ({', '.join(hardware_keys(profile))}), or "
                        "pass --privileged (privileged:=true) for a simulation-only reference policy")


STATE_QOS = qos(100)
"""Depth 100: a subscriber that falls up to a second behind a 100 Hz stream (or a twin running
faster than real time between lock-step gates) loses no sample."""
COMMAND_QOS = qos(10)
IMAGE_QOS = qos(2)
"""Reliable, depth 2: with the shipped shared-memory DDS profile this is the fastest option
(best-effort images are dropped by default Fast DDS; see docs)."""
LATCHED_QOS = qos(1, latched=True)


@dataclass(frozen=True)
class Topic:
    name: str
    type: Any
    qos: QoSProfile


@dataclass(frozen=True)
class Service:
    name: str
    type: Any


@dataclass(frozen=True)
class CameraTopics:
    image: Topic
    info: Topic
    depth: Topic | None
    depth_info: Topic | None


class Contract:
    """Topic and service names, types and QoS for one robot profile."""

    def __init__(self, profile: RobotProfile):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray, PoseStamped, TwistStamped
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Bool, Float64MultiArray
        from std_srvs.srv import SetBool, Trigger
        from trajectory_msgs.msg import JointTrajectory

        self.profile = profile
        controller = profile.control.controller
        self.joint_states = Topic("joint_states", JointState, STATE_QOS)
        self.joint_trajectory = Topic(f"{controller}/joint_trajectory", JointTrajectory, COMMAND_QOS)
        self.joint_commands = Topic(f"{controller}/commands", Float64MultiArray, COMMAND_QOS)
        self.gripper_commands = (
            Topic(f"{profile.gripper.controller}/commands", Float64MultiArray, COMMAND_QOS) if profile.gripper else None
        )
        self.ee_pose = Topic("ee_pose", PoseStamped, STATE_QOS)
        self.target_pose = Topic("cartesian/target_pose", PoseStamped, COMMAND_QOS)
        self.target_twist = Topic("cartesian/target_twist", TwistStamped, COMMAND_QOS)
        self.object_poses = Topic("object_poses", PoseArray, STATE_QOS)
        self.estop = Topic("estop", Bool, COMMAND_QOS)
        self.estop_state = Topic("estop/state", Bool, LATCHED_QOS)
        self.intervention = Topic("teleop/intervention", Bool, COMMAND_QOS)
        self.diagnostics = Topic("/diagnostics", DiagnosticArray, STATE_QOS)
        self.estop_service = Service("estop/set", SetBool)
        self.reset_service = Service("reset", Trigger)
        self.pause_service = Service("pause", SetBool)
        self.task_success_service = Service("task_success", Trigger)
        from rosgraph_msgs.msg import Clock

        self.step_until = Topic("sim/step_until", Clock, LATCHED_QOS)
        self.episode_services = {name: Service(f"episode/{name}", Trigger) for name in ("start", "save", "discard")}

    def camera(self, name: str) -> CameraTopics:
        from sensor_msgs.msg import CameraInfo, Image

        cam = self.profile.camera(name)
        depth = Topic(f"{name}/depth/image_rect_raw", Image, IMAGE_QOS) if cam.depth else None
        depth_info = Topic(f"{name}/depth/camera_info", CameraInfo, IMAGE_QOS) if cam.depth else None
        return CameraTopics(
            image=Topic(f"{name}/color/image_raw", Image, IMAGE_QOS),
            info=Topic(f"{name}/color/camera_info", CameraInfo, IMAGE_QOS),
            depth=depth,
            depth_info=depth_info,
        )

    @property
    def cameras(self) -> dict[str, CameraTopics]:
        return {name: self.camera(name) for name in self.profile.camera_names}

    # rclpy helpers, so nodes never spell a name, type or QoS themselves
    def publisher(self, node: Any, topic: Topic) -> Any:
        return node.create_publisher(topic.type, topic.name, topic.qos)

    def subscription(self, node: Any, topic: Topic, callback: Any) -> Any:
        return node.create_subscription(topic.type, topic.name, callback, topic.qos)

    def service(self, node: Any, service: Service, callback: Any) -> Any:
        return node.create_service(service.type, service.name, callback)

    def client(self, node: Any, service: Service) -> Any:
        return node.create_client(service.type, service.name)
