"""Policy observations from the contract's topics, aligned by capture time.

``ObservationStreams`` subscribes to exactly the topics a policy's observation keys need,
keeps a short timestamped history per key, and samples every key at the same instants
(nearest earlier sample within a tolerance). Keys and their topics:

=================  ========================================================
``joint_pos``      ``joint_states`` positions (arm joints then gripper)
``joint_vel``      ``joint_states`` velocities
``ee_pose``        ``ee_pose`` as (x, y, z, qx, qy, qz, qw)
``object_state``   ``object_poses`` through the task's ``object_state_from_poses``
``<cam>_image``    ``<cam>/color/image_raw`` as (H, W, 3) uint8 RGB
=================  ========================================================
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from robot_stack import convert
from robot_stack.contract import Contract, Topic
from robot_stack.errors import UserError

IMAGE_SUFFIX = "_image"


@dataclass
class StreamHistory:
    topic: str
    stamps: deque
    values: deque
    last_receive: float | None = None


def _pose_vector(pose) -> np.ndarray:  # noqa: ANN001 - geometry_msgs/Pose
    p, o = pose.position, pose.orientation
    return np.array([p.x, p.y, p.z, o.x, o.y, o.z, o.w], dtype=np.float32)


class ObservationStreams:
    def __init__(self, node, contract: Contract, keys: list[str], history: int = 64,  # noqa: ANN001
                 task_kind: str | None = None):
        """``task_kind`` (reach, pick_cube, push) is needed when ``object_state`` is a key."""
        self.node, self.contract, self.keys = node, contract, list(keys)
        if "object_state" in self.keys and not task_kind:
            raise UserError("the policy observes object_state: give the task (parameter 'task') so its object "
                            "poses can be interpreted")
        self.task_kind = task_kind
        self._lock = threading.Lock()
        self.since = -np.inf  # samples captured earlier are ignored (see ``restart``)
        names = contract.profile.all_joint_names
        self.streams: dict[str, StreamHistory] = {}
        subscriptions: dict[str, tuple[Topic, list[str]]] = {}
        for key in self.keys:
            if key in ("joint_pos", "joint_vel"):
                topic = contract.joint_states
            elif key == "ee_pose":
                topic = contract.ee_pose
            elif key == "object_state":
                topic = contract.object_poses
            elif key.endswith(IMAGE_SUFFIX):
                camera = key[: -len(IMAGE_SUFFIX)]
                topic = contract.camera(camera).image
            else:
                raise UserError(f"observation key {key!r} has no topic in the contract "
                                f"(known: joint_pos, joint_vel, ee_pose, object_state, <camera>{IMAGE_SUFFIX})")
            self.streams[key] = StreamHistory(topic.name, deque(maxlen=history), deque(maxlen=history))
            subscriptions.setdefault(topic.name, (topic, []))[1].append(key)

        def handler(keys: list[str]):  # noqa: ANN202
            def on_message(msg) -> None:  # noqa: ANN001
                stamp = convert.to_sec(msg.header.stamp)
                for key in keys:
                    value = self._extract(key, msg, names)
                    if value is not None:
                        self._add(key, stamp, value)
            return on_message

        for topic, keys in subscriptions.values():
            contract.subscription(node, topic, handler(keys))

    def _extract(self, key: str, msg, names: list[str]) -> np.ndarray | None:  # noqa: ANN001
        try:
            if key == "joint_pos":
                return convert.joint_state_arrays(msg, names)[0].astype(np.float32)
            if key == "joint_vel":
                return convert.joint_state_arrays(msg, names)[1].astype(np.float32)
            if key == "ee_pose":
                return _pose_vector(msg.pose)
            if key == "object_state":
                from robot_stack.sim.tasks import object_state_from_poses

                rows = np.array([_pose_vector(p) for p in msg.poses]).reshape(-1, 7)
                return object_state_from_poses(self.task_kind, rows).astype(np.float32)
            image = convert.image_to_array(msg)
            if msg.encoding == "bgr8":
                image = image[:, :, ::-1]
            elif msg.encoding == "mono8":
                image = np.repeat(image[:, :, None], 3, axis=2)
            return np.ascontiguousarray(image)
        except (convert.MessageError, ValueError) as err:
            self.node.get_logger().error(f"bad message for {key}: {err}", throttle_duration_sec=2.0)
            return None

    def _add(self, key: str, stamp: float, value: np.ndarray) -> None:
        with self._lock:
            s = self.streams[key]
            if stamp < self.since:
                return
            if s.stamps and stamp <= s.stamps[-1]:
                if stamp < s.stamps[-1]:
                    return  # out of order: keep the history monotonic
                s.values[-1] = value
            else:
                s.stamps.append(stamp)
                s.values.append(value)
            s.last_receive = self.node.get_clock().now().nanoseconds * 1e-9

    def silent(self, now: float, timeout: float) -> list[str]:
        """Topics with no message in the last ``timeout`` seconds (or never)."""
        with self._lock:
            return sorted({s.topic for s in self.streams.values()
                           if s.last_receive is None or now - s.last_receive > timeout})

    def newest_common_stamp(self) -> float | None:
        """The latest instant every stream has reached (alignment to the slowest stream)."""
        with self._lock:
            if any(not s.stamps for s in self.streams.values()):
                return None
            return min(s.stamps[-1] for s in self.streams.values())

    def sample(self, times: list[float], tolerance: float) -> dict[str, np.ndarray] | None:
        """Each key at each time (nearest earlier sample, at most ``tolerance`` s older), stacked (T, ...)."""
        out = {}
        with self._lock:
            for key, s in self.streams.items():
                stamps = list(s.stamps)
                rows = []
                for t in times:
                    i = bisect.bisect_right(stamps, t + 1e-9) - 1
                    if i < 0:
                        i = 0  # history shorter than the horizon: repeat the oldest (as at episode start)
                    elif t - stamps[i] > tolerance:
                        return None
                    rows.append(s.values[i])
                out[key] = np.stack(rows)
        return out

    def restart(self, since: float) -> None:
        """Forget the history and ignore samples captured before ``since``.

        The history then starts like an episode's: shorter than the horizon, its oldest sample
        repeated (as the policy was trained at episode starts). Used when control comes back from
        the operator, so the first plan never mixes in the state before a reset or a takeover.
        """
        with self._lock:
            self.since = since
            for s in self.streams.values():
                s.stamps.clear()
                s.values.clear()
