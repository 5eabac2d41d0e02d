"""Policy observations: what a robot publishes, kept per key with capture stamps and sampled aligned.

``ObservationHistory`` (no ROS) keeps a short timestamped history per observation key and samples
every key at the same instants (nearest earlier sample within a tolerance). The in-process runtime
feeds it directly; ``subscribe`` feeds it from the contract's topics. Keys and their topics:

=================  ========================================================
``joint_pos``      ``joint_states`` positions (arm joints then gripper)
``joint_vel``      ``joint_states`` velocities
``ee_pose``        ``ee_pose`` as (x, y, z, qx, qy, qz, qw)
``object_state``   ``object_poses`` through the task's ``object_state_from_poses`` (simulator
                   ground truth: a privileged key, see ``robot_stack.contract.PRIVILEGED_KEYS``)
``<cam>_image``    ``<cam>/color/image_raw`` as (H, W, 3) uint8 RGB
=================  ========================================================

Both feeds use the same value functions (``joint_values``, ``pose_vector``, ``object_values``), so a
policy sees identical numbers in-process and over ROS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_stack.errors import UserError
from robot_stack.stamped import StampedStream

IMAGE_SUFFIX = "_image"
LOWDIM_KEYS = ("joint_pos", "joint_vel", "ee_pose", "object_state")


def check_key(key: str) -> None:
    if key not in LOWDIM_KEYS and not key.endswith(IMAGE_SUFFIX):
        raise UserError(f"observation key {key!r} has no topic in the contract "
                        f"(known: {', '.join(LOWDIM_KEYS)}, <camera>{IMAGE_SUFFIX})")


# -- values: one definition for the in-process and the ROS feed ------------------------------------------
def joint_values(position: np.ndarray, velocity: np.ndarray) -> dict[str, np.ndarray]:
    return {"joint_pos": np.asarray(position, dtype=np.float32), "joint_vel": np.asarray(velocity, dtype=np.float32)}


def pose_vector(position: Any, quat_xyzw: Any) -> np.ndarray:
    return np.concatenate([np.asarray(position, float), np.asarray(quat_xyzw, float)]).astype(np.float32)


def object_values(task_kind: str, poses: np.ndarray) -> np.ndarray:
    """``object_state`` from object poses (rows x, y, z, qx, qy, qz, qw) as published on ``object_poses``."""
    from robot_stack.tasks import object_state_from_poses

    rows = np.asarray(poses, dtype=np.float32).reshape(-1, 7)
    return object_state_from_poses(task_kind, rows).astype(np.float32)


def observation_dict(position: np.ndarray, velocity: np.ndarray, ee_pose: tuple | None = None,
                     object_state: np.ndarray | None = None, images: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One observation (no time axis): joints, ``ee_pose`` (position, quaternion xyzw), object state, images."""
    obs = joint_values(position, velocity)
    if ee_pose is not None:
        obs["ee_pose"] = pose_vector(*ee_pose)
    if object_state is not None:
        obs["object_state"] = np.asarray(object_state, dtype=np.float32)
    for name, image in (images or {}).items():
        obs[f"{name}{IMAGE_SUFFIX}"] = np.ascontiguousarray(image, dtype=np.uint8)
    return obs


class LazyFrame:
    """A camera frame rendered only if a policy samples it (in-process; same pixels as the published one)."""

    __slots__ = ("_render", "_array")

    def __init__(self, render: Callable[[], np.ndarray]):
        self._render, self._array = render, None

    def array(self) -> np.ndarray:
        if self._array is None:
            self._array = self._render()
            self._render = None
        return self._array


def _resolve(value: Any) -> np.ndarray:
    return value.array() if isinstance(value, LazyFrame) else value


HISTORY_LENGTH = 64
"""Samples kept per observation key: several policy horizons of a 100 Hz stream."""


class ObservationHistory:
    """Recent samples of each observation key, aligned by capture stamp (thread-safe)."""

    def __init__(self, keys: list[str]):
        for key in keys:
            check_key(key)
        self.keys = list(keys)
        self.streams = {key: StampedStream(HISTORY_LENGTH) for key in self.keys}
        self.last_receive: dict[str, float | None] = dict.fromkeys(self.keys)
        self.since = -np.inf  # samples captured at or before this are ignored (see ``restart``)
        self._lock = threading.Lock()

    def add(self, key: str, stamp: float, value: Any, received: float) -> None:
        """A sample of ``key`` captured at ``stamp``; one older than the key's newest is dropped."""
        with self._lock:
            if stamp > self.since and self.streams[key].add(stamp, value):
                self.last_receive[key] = received

    def silent(self, now: float, timeout: float) -> list[str]:
        """Keys with no sample received in the last ``timeout`` seconds (or never)."""
        with self._lock:
            return sorted(k for k, t in self.last_receive.items() if t is None or now - t > timeout)

    def newest_common_stamp(self) -> float | None:
        """The latest instant every stream has reached (alignment to the slowest stream)."""
        with self._lock:
            newest = [s.newest_stamp() for s in self.streams.values()]
            return None if None in newest else min(newest)

    def sample(self, times: list[float], tolerance: float) -> dict[str, np.ndarray] | None:
        """Each key at each time (nearest earlier sample, at most ``tolerance`` s older), stacked (T, ...)."""
        picked: dict[str, list[Any]] = {}
        with self._lock:
            for key, s in self.streams.items():
                rows = []
                for t in times:
                    hit = s.at(t)
                    if hit is None:
                        hit = s.oldest()  # history shorter than the horizon: repeat the oldest (as at episode start)
                        if hit is None:
                            return None
                    elif t - hit[0] > tolerance:
                        return None
                    rows.append(hit[1])
                picked[key] = rows
        return {key: np.stack([_resolve(v) for v in rows]) for key, rows in picked.items()}

    def restart(self, since: float) -> None:
        """Forget the history and ignore samples captured at or before ``since``.

        The history then starts like an episode's: shorter than the horizon, its oldest sample
        repeated (as the policy was trained at episode starts). Used when control comes back from
        the operator, so the first plan never mixes in the state before a reset or a takeover.
        """
        with self._lock:
            self.since = since
            for key, s in self.streams.items():
                s.clear()
                self.last_receive[key] = None


def subscribe(node, contract, history: ObservationHistory, task_kind: str | None = None,
              now: Callable[[], float] | None = None) -> list:
    """Feed ``history`` from the contract topics its keys need (one subscription per topic); returns them."""
    from robot_stack import convert

    if "object_state" in history.keys and not task_kind:
        raise UserError("the policy observes object_state: give the task (parameter 'task') so its object "
                        "poses can be interpreted")
    names = contract.profile.all_joint_names
    clock = now or (lambda: node.get_clock().now().nanoseconds * 1e-9)
    topics: dict[str, tuple[Any, list[str]]] = {}
    for key in history.keys:
        if key in ("joint_pos", "joint_vel"):
            topic = contract.joint_states
        elif key == "ee_pose":
            topic = contract.ee_pose
        elif key == "object_state":
            topic = contract.object_poses
        else:
            topic = contract.camera(key[: -len(IMAGE_SUFFIX)]).image
        topics.setdefault(topic.name, (topic, []))[1].append(key)

    def extract(key: str, msg) -> Any:
        if key in ("joint_pos", "joint_vel"):
            return joint_values(*convert.joint_state_arrays(msg, names)[:2])[key]
        if key == "ee_pose":
            p, o = msg.pose.position, msg.pose.orientation
            return pose_vector((p.x, p.y, p.z), (o.x, o.y, o.z, o.w))
        if key == "object_state":
            return object_values(task_kind, [pose_vector((p.position.x, p.position.y, p.position.z),
                                                         (p.orientation.x, p.orientation.y, p.orientation.z,
                                                          p.orientation.w)) for p in msg.poses])
        return convert.image_rgb(msg)

    def handler(keys: list[str]):
        def on_message(msg) -> None:
            stamp = convert.to_sec(msg.header.stamp)
            received = max(clock(), stamp)  # on sim time in lock-step the clock moves only at the gates
            for key in keys:
                try:
                    value = extract(key, msg)
                except (convert.MessageError, ValueError) as err:
                    node.get_logger().error(f"bad message for {key}: {err}", throttle_duration_sec=2.0)
                    continue
                history.add(key, stamp, value, received)
        return on_message

    return [contract.subscription(node, topic, handler(keys)) for topic, keys in topics.values()]


def drain(subscriptions: list) -> None:
    """Run the callbacks of every message already delivered to ``subscriptions`` (an executor takes one per wait)."""
    for sub in subscriptions:
        while True:
            with sub.handle:
                taken = sub.handle.take_message(sub.msg_type, sub.raw)
            if taken is None:
                break
            with_info = sub._callback_type == type(sub).CallbackType.WithMessageInfo
            sub.callback(*(taken if with_info else taken[:1]))
