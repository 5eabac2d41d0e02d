"""``recorder_node``: record episodes from the contract's topics into an :class:`EpisodeStore`.

    recorder_node --ros-args -p profile:=so101 -p store:=data/pick.zarr -p record_rate_hz:=10.0

Sampling. Every stream is sampled on a fixed grid of tick times ``t0 + k / record_rate_hz``
(ROS time; ``record_rate_hz`` defaults to the profile's control rate). A tick is assembled
``latency_s`` after its time, so that messages captured before the tick have arrived. For each
tick the recorder takes, per stream, the newest message whose capture stamp (``header.stamp``)
is at or before the tick. A message older than its tolerance (``tolerance_s``; default 1.5 of the
stream's nominal period) is still used but counted as *late*; gaps in a camera's capture stamps
are counted as *missing* frames; both are reported live and stored in the episode metadata.
Nothing is dropped silently: if the writer falls behind so far that its queue is full, the step
is counted as *dropped*.

Stored keys (see docs/data.md): ``timestamp``, ``joint_pos``, ``joint_vel``, ``action``,
``intervention``, ``ee_pose`` (when ``ee_pose`` was published before the episode started),
``object_state`` (when ``object_poses`` was published before the episode started and ``task`` names
a task: the task's ``object_state_from_poses``) and ``<camera>_image`` + ``<camera>_stamp`` for
each camera.

``action`` is the commanded absolute joint position (arm joints then gripper) at the tick: the
latest point that is due of the latest ``joint_trajectory`` (a trajectory's first point counts
from when it was sent; a new trajectory replaces the remaining points of the previous one), or the
latest ``commands`` / gripper ``commands`` message, whichever came last per joint. Commands carry no
capture stamp, so their time is the DDS source timestamp (when the publisher sent them, system
clock): a busy recorder that runs their callbacks late still files them at the right tick (on sim
time their arrival on the ROS clock is used). Joints never
commanded in the episode (a command older than the robot's watchdog when the episode starts is no
longer in effect) take the measured position (counted as ``action_fallback_steps``).

Episodes are controlled with the ``episode/start``, ``episode/save`` and ``episode/discard``
Trigger services; ``task``, ``operator`` and ``success`` parameters are read when saving.
Frames are written by a writer thread through a bounded queue, and every step is journaled as it
arrives (``EpisodeWriter`` with a journal: durable at least once a second). ``save`` answers when
the episode is durable (``saved episode N (... durable)``): its last ticks are assembled
``latency_s`` after the call, the writer seals its journal (one sync), and the answer goes out;
the commit into the store follows, off the answer's path, and logs ``saved episode N (...)``. A
crash at any moment after the answer keeps the episode (the next open commits it from the
journal); an episode in flight at a crash comes back up to its last durable step, marked
``recovered``. ``discard`` answers once the episode and its journal are gone. Service callbacks
await the writer without blocking the executor, so the node runs on one executor thread. Stopping
the node saves what has ended and drains the queue first.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_stack.data.align import CLOCK_JUMP_S, Streams, image_array, missed_frames, task_kind, tolerances
from robot_stack.errors import UserError
from robot_stack.typed_config import field

WRITE_BATCH = 8


@dataclass
class StreamStats:
    """Live counters of one input stream."""

    received: int = 0
    late: int = 0
    missing: int = 0
    bad: int = 0
    last_stamp: float | None = None
    recent: deque = field("arrival times of the latest messages", default_factory=lambda: deque(maxlen=400))

    def rate(self, now: float) -> float:
        while self.recent and now - self.recent[0] > 2.0:
            self.recent.popleft()
        return len(self.recent) / 2.0


LOCKSTEP_LEAD_S = 0.05
"""Lock-step: how far past the last time it announced the twin may run before the recorder has taken in its data
(within the DDS history of every stream, so nothing is overwritten unread)."""


@dataclass(frozen=True)
class RecorderOptions:
    robot: str = field("robot profile name or YAML path", default="so101")
    cameras: str = field("comma-separated cameras to record ('' or all: the profile's; none)", default="")
    record_rate_hz: float = field("sampling rate, Hz (0: profile control rate)", default=0.0)
    latency_s: float = field("assemble a tick this long after its time", default=0.1)
    tolerance_s: float = field("max age of a sample at a tick (0: 1.5 periods)", default=0.0)
    store: str = field("episode store folder (created if missing)", default="data/episodes.zarr")
    image_codec: str = field("image codec: jpeg (quality 95, ~18x smaller) or blosc (lossless lz4)", default="jpeg")
    fsync: bool = field("fsync every file (survives power loss)", default=True)
    queue_s: float = field("writer queue length, seconds of steps", default=3.0)
    task: str = field("task stored with each episode (a task name also enables object_state)", default="")
    operator: str = field("operator name stored with each episode", default="")
    success: bool = field("success flag stored with the next saved episode", default=True)
    progress: bool = field("live progress table", default=sys.stdout.isatty())
    lockstep: bool = field("sim time: the twin waits until the recorder has taken in each stretch of data "
                           "(sim/step_until)", default=False)

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.tolerance_s < 0 or self.queue_s <= 0:
            raise ValueError("latency_s and tolerance_s must be >= 0 and queue_s > 0")


def make_recorder():  # rclpy node, imported lazily
    from rclpy.callback_groups import ReentrantCallbackGroup
    from rclpy.node import Node

    from robot_stack import convert
    from robot_stack.contract import Contract
    from robot_stack.data.store import EpisodeStore
    from robot_stack.node import steady_clock
    from robot_stack.node_options import read_options
    from robot_stack.profile import load_profile
    from robot_stack.typed_config import to_dict

    class Recorder(Node):
        def __init__(self) -> None:
            super().__init__("recorder")
            options = read_options(self, RecorderOptions)
            profile = load_profile(options.robot)
            cams = options.cameras
            if cams.strip() not in ("", "all"):
                profile = profile.with_cameras([c.strip() for c in cams.split(",") if c.strip() not in ("", "none")])
            self.profile = profile
            self.contract = Contract(profile)
            self.rate = options.record_rate_hz if options.record_rate_hz > 0 else profile.control.rate_hz
            self.latency, tolerance = options.latency_s, options.tolerance_s
            store_path, codec, fsync = options.store, options.image_codec, options.fsync
            self.queue_s, task, self.show_progress = options.queue_s, options.task, options.progress

            self.names = profile.all_joint_names
            self.n = len(self.names)
            self.task_kind = task_kind(task)
            self.tol = tolerances(profile, tolerance)
            keep = self.latency + max(self.tol.values()) + 1.0
            self.streams = Streams(profile, self.tol, keep, task_kind=self.task_kind)
            self.frames = self.streams.frames
            self.stats = {name: StreamStats() for name in ["joint_states", "ee_pose", "object_poses", *self.frames]}

            self.use_sim_time = bool(self.get_parameter("use_sim_time").value)
            self.store = EpisodeStore(store_path, "a", image_codec=codec, fsync=fsync)
            self.queue: queue.Queue = queue.Queue(maxsize=max(4, int(self.queue_s * self.rate)))
            self.episode: dict[str, Any] | None = None  # the episode being recorded
            self.ending: list[dict[str, Any]] = []  # ended episodes whose last ticks are not assembled yet
            self.saved = self.store.n_episodes  # committed (the writer's count)
            self.next_id = self.saved  # id of the next episode: committed + queued saves
            self.last_message = ""
            self.broken = ""  # set when the store refused a commit: no further episodes into it
            self._replies: deque = deque()  # (future, ok, message) from the writer, for the executor thread
            # the episode services await the writer: their own (reentrant) group, so that a pending save
            # does not hold back the ticks and subscriptions of the default (mutually exclusive) group
            self._services_group = ReentrantCallbackGroup()
            self._reply_gc = self.create_guard_condition(self._deliver_replies, self._services_group)
            self.writer = threading.Thread(target=self._write_loop, name="episode-writer", daemon=True)
            self.writer.start()

            c = self.contract
            self.create_subscription(c.joint_states.type, c.joint_states.name, self._on_joint_states, c.joint_states.qos)
            self.create_subscription(c.ee_pose.type, c.ee_pose.name, self._on_ee_pose, c.ee_pose.qos)
            if self.task_kind:
                self.create_subscription(c.object_poses.type, c.object_poses.name, self._on_object_poses, c.object_poses.qos)
            self.create_subscription(c.intervention.type, c.intervention.name, self._on_intervention, c.intervention.qos)
            self.create_subscription(c.joint_trajectory.type, c.joint_trajectory.name, self._on_trajectory, c.joint_trajectory.qos)
            self.create_subscription(c.joint_commands.type, c.joint_commands.name, self._on_commands, c.joint_commands.qos)
            if c.gripper_commands is not None:
                t = c.gripper_commands
                self.create_subscription(t.type, t.name, self._on_gripper, t.qos)
            for name, topics in c.cameras.items():
                self.create_subscription(
                    topics.image.type, topics.image.name, lambda m, n=name: self._on_image(n, m), topics.image.qos)
            for name, handler in (("start", self._start), ("save", self._save), ("discard", self._discard)):
                srv = c.episode_services[name]
                self.create_service(srv.type, srv.name, handler, callback_group=self._services_group)
            # polled on the wall clock: on sim time a twin that holds for a save (lock-step) would stop it
            self.create_timer(min(0.02, 0.5 / self.rate), self._tick, clock=steady_clock())
            self.lockstep = options.lockstep
            self.drained = 0.0  # lock-step: sim time up to which every published message is in the streams
            if self.lockstep:  # the twin on sim time waits until the recorder took in what it published
                from rosgraph_msgs.msg import Clock

                self.data_subs = list(self.subscriptions)
                self.gate_pub = c.publisher(self, c.step_until)
                self.gate = 0.0
                self.create_subscription(Clock, "/clock", self._on_clock, 10)
                self.create_timer(0.5, self._publish_gate, clock=steady_clock())
            self.create_timer(0.5 if self.show_progress else 5.0, self._progress)
            self._live = None
            if self.show_progress:
                from rich.live import Live

                self._live = Live(self._table(), refresh_per_second=2, transient=False)
                self._live.start()
            self.get_logger().info(
                f"recording {profile.name} at {self.rate:g} Hz into {store_path} "
                f"({self.store.n_episodes} episodes there); cameras: {', '.join(self.frames) or 'none'}"
            )

        # -- inputs ------------------------------------------------------------------------------
        def _now(self) -> float:
            return self.get_clock().now().nanoseconds * 1e-9

        def _count(self, name: str, stamp: float) -> None:
            s = self.stats[name]
            s.received += 1
            s.recent.append(time.monotonic())

        def _add(self, name: str, add: Any, msg: Any) -> float | None:
            """Parse a sensor message into its stream; a bad one is counted and logged, never stored."""
            try:
                stamp = add(msg)
            except convert.MessageError as err:
                self.stats[name].bad += 1
                self.get_logger().warning(f"ignoring {name}: {err}", throttle_duration_sec=5.0)
                return None
            self._count(name, stamp)
            return stamp

        def _on_joint_states(self, msg: Any) -> None:
            self._add("joint_states", self.streams.add_joint_states, msg)

        def _on_ee_pose(self, msg: Any) -> None:
            self._add("ee_pose", self.streams.add_ee_pose, msg)

        def _on_object_poses(self, msg: Any) -> None:
            self._add("object_poses", self.streams.add_object_poses, msg)

        def _on_image(self, name: str, msg: Any) -> None:
            stamp = self._add(name, lambda m: self.streams.add_image(name, m), msg)
            if stamp is None:
                return
            s, fps = self.stats[name], self.profile.camera(name).fps
            if s.last_stamp is not None and self.episode is not None:
                gap = stamp - s.last_stamp
                if gap > CLOCK_JUMP_S:
                    self.get_logger().warning(f"{name}: capture stamps jumped by {gap:.0f} s (a restarted source or "
                                              "another clock): not counted as missing frames")
                s.missing += missed_frames(gap, fps)
            s.last_stamp = stamp

        def _sent(self, info: Any) -> float:
            """When a message without a capture stamp was published: its DDS source timestamp (the system
            clock), so that callbacks that run late on a busy machine never file a command a tick late;
            on sim time (or without a source timestamp) its arrival on the ROS clock."""
            sent = info["source_timestamp"] if info else 0
            return sent * 1e-9 if sent > 0 and not self.use_sim_time else self._now()

        def _on_command(self, what: str, add: Any, msg: Any, info: Any) -> None:
            try:
                add(self._sent(info), msg)
            except convert.MessageError as err:
                self.get_logger().warning(f"ignoring {what}: {err}", throttle_duration_sec=5.0)

        def _on_intervention(self, msg: Any, info: Any) -> None:
            self.streams.add_intervention(self._sent(info), msg)

        def _on_trajectory(self, msg: Any, info: Any) -> None:
            self._on_command("joint_trajectory", self.streams.add_trajectory, msg, info)

        def _on_commands(self, msg: Any, info: Any) -> None:
            self._on_command("commands", self.streams.add_commands, msg, info)

        def _on_gripper(self, msg: Any, info: Any) -> None:
            self._on_command("gripper commands", self.streams.add_gripper, msg, info)

        # -- lock-step -----------------------------------------------------------------------------
        def _on_clock(self, msg: Any) -> None:
            from robot_stack.policies.observations import drain

            drain(self.data_subs)  # every message the twin published up to this time is in the streams
            self.drained = convert.to_sec(msg.clock)
            self.gate = self.drained + LOCKSTEP_LEAD_S
            self._publish_gate()

        def _publish_gate(self) -> None:
            from rosgraph_msgs.msg import Clock

            self.gate_pub.publish(Clock(clock=convert.to_stamp(self.gate)))

        # -- the tick ------------------------------------------------------------------------------
        def _tick(self, horizon: float | None = None) -> None:
            """Assemble every tick older than ``latency_s`` (lock-step: up to the last drained clock; or up to ``horizon``).

            Ended episodes are finished (their last ticks, then the commit or discard) before the
            next episode's first step is queued, so the writer sees one episode at a time.
            """
            if horizon is None:  # lock-step: the twin holds until the recorder drained, so no latency to wait for
                horizon = self.drained + 1e-6 if self.lockstep else self._now() - self.latency  # 1e-6: ns vs float seconds
            while self.ending:
                ep = self.ending[0]
                self._begin(ep)
                self._assemble(ep, min(horizon, ep["end"]))
                if ep["next"] <= ep["end"]:
                    return  # its last ticks are not due yet
                self.ending.pop(0)
                if ep["save"]:
                    self.queue.put(("save", ep["id"], (self._episode_info(ep), ep["reply"])))
                else:
                    self.queue.put(("discard", ep["id"], ep["reply"]))
            ep = self.episode
            if ep is None:
                return
            self._begin(ep)
            self._assemble(ep, horizon)

        def _begin(self, ep: dict[str, Any]) -> None:
            if not ep["begun"]:  # the journal keeps what a recovered episode needs: profile and metadata
                info = self._episode_info(ep)
                self.queue.put(("begin", ep["id"], {"profile": info.pop("profile"), "info": info}))
                ep["begun"] = True

        def _assemble(self, ep: dict[str, Any], until: float) -> None:
            while ep["next"] <= until:
                self._sample(ep, ep["next"])
                ep["k"] += 1
                ep["next"] = ep["t0"] + ep["k"] / self.rate

        def _sample(self, ep: dict[str, Any], t: float) -> None:
            step, late, fallback = self.streams.sample(t, ep["ee"], ep["objects"])
            if step is None:
                if ep["steps"] == 0:
                    ep["warmup"] += 1  # a stream has nothing captured before the first ticks: start later
                else:
                    ep["dropped"] += 1  # (only if a stream's history was overrun; counted, never silent)
                return
            for name in late:
                self.stats[name].late += 1
                ep["late"][name] += 1
            ep["fallback"] += int(fallback)
            try:
                self.queue.put_nowait(("step", ep["id"], step))
                ep["steps"] += 1
            except queue.Full:
                ep["dropped"] += 1
                self.get_logger().error("writer queue full: a step was dropped (disk too slow?)", throttle_duration_sec=2.0)

        # -- episode services --------------------------------------------------------------------
        def _start(self, request: Any, response: Any) -> Any:
            missing = self.streams.missing()
            if self.broken:
                response.success, response.message = False, self.broken
                return response
            if self.episode is not None:
                response.success, response.message = False, f"already recording episode {self.episode['id']}"
                return response
            if missing:
                topics = [self.contract.joint_states.name if n == "joint_states" else self.contract.camera(n).image.name for n in missing]
                response.success, response.message = False, f"no messages yet on {', '.join(topics)}"
                return response
            # keys must match the store's: ee_pose follows the store once it has episodes
            stored = set(self.store.keys)
            with_ee = "ee_pose" in stored if stored else bool(self.streams.ee)
            expected = {"timestamp", "joint_pos", "joint_vel", "action", "intervention"}
            expected |= {f"{n}_{s}" for n in self.frames for s in ("image", "stamp")}
            expected |= {"ee_pose"} if with_ee else set()
            with_obj = "object_state" in stored if stored else bool(self.streams.objects)
            expected |= {"object_state"} if with_obj else set()
            waiting = [name for name, needed, stream in (
                (self.contract.ee_pose.name, with_ee, self.streams.ee),
                (self.contract.object_poses.name + ("" if self.task_kind else " (set the task parameter)"), with_obj,
                 self.streams.objects)) if needed and not stream]
            if stored and waiting:  # the store's episodes have these keys: never record them empty
                response.success = False
                response.message = f"{self.store.path} holds episodes with them: no messages yet on {', '.join(waiting)}"
                return response
            if stored and expected != stored:
                response.success = False
                response.message = (
                    f"{self.store.path} holds keys {sorted(stored)} but this recorder would write {sorted(expected)}: "
                    "record into another store or match its cameras"
                )
                return response
            now = self._now()
            self.streams.commands.begin(now, self.profile.control.watchdog_periods * self.profile.control_period)
            ep_id = self.next_id
            self.episode = {
                "id": ep_id, "t0": now, "k": 0, "next": now, "end": None, "begun": False,
                "steps": 0, "warmup": 0, "dropped": 0, "fallback": 0, "ee": with_ee,
                "objects": (self.streams.objects.values[-1].size if self.streams.objects else 0) if with_obj else None,
                "late": {n: 0 for n in self.stats}, "missing0": {n: self.stats[n].missing for n in self.frames},
                "started": time.time(),
            }
            response.success, response.message = True, f"recording episode {ep_id}"
            self.get_logger().info(response.message)
            return response

        async def _finish(self, save: bool, response: Any) -> Any:
            from rclpy.task import Future

            ep = self.episode
            if ep is None:
                response.success, response.message = False, "not recording (call episode/start first)"
                return response
            ep["end"], ep["save"], ep["reply"] = self._now(), save, self._reply_to(Future())
            self.ending.append(ep)  # the tick assembles its last ticks, then the writer saves or discards it
            self.episode = None
            self.next_id += int(save)
            response.success, response.message = await ep["reply"].future
            if not response.success:
                self.get_logger().error(response.message)
            elif not save:  # a saved episode is logged once, when committed ("saved episode N (...)")
                self.get_logger().info(response.message)
            self.last_message = response.message
            return response

        async def _save(self, request: Any, response: Any) -> Any:
            return await self._finish(True, response)

        async def _discard(self, request: Any, response: Any) -> Any:
            return await self._finish(False, response)

        def _reply_to(self, future: Any) -> Callable[[bool, str], None]:
            """A callable for the writer thread that completes ``future`` on the executor thread."""
            def reply(ok: bool, message: str) -> None:
                self._replies.append((future, ok, message))
                self._reply_gc.trigger()

            reply.future = future  # type: ignore[attr-defined]
            return reply

        def _deliver_replies(self) -> None:
            while self._replies:
                future, ok, message = self._replies.popleft()
                future.set_result((ok, message))

        def _episode_info(self, ep: dict[str, Any]) -> dict[str, Any]:
            calibration = {"joints": self.profile.hardware.calibration or ""}
            calibration.update({c.name: c.intrinsics or "" for c in self.profile.cameras})
            return {
                "task": self.get_parameter("task").value,
                "operator": self.get_parameter("operator").value,
                "success": bool(self.get_parameter("success").value),
                "profile": to_dict(self.profile),
                "calibration": calibration,
                "started": ep["started"],
                "late_frames": {k: v for k, v in ep["late"].items() if k in self.frames or v},
                "missing_frames": {n: self.stats[n].missing - ep["missing0"][n] for n in self.frames},
                "extra": {
                    "record_rate_hz": self.rate,
                    "tolerance_s": self.tol,
                    "dropped_steps": ep["dropped"],
                    "action_fallback_steps": ep["fallback"],
                    "warmup_ticks": ep["warmup"],
                },
            }

        # -- writer thread -----------------------------------------------------------------------
        def _write_loop(self) -> None:
            writer = None
            failed: BaseException | None = None
            batch: list[dict[str, Any]] = []

            def flush() -> None:
                nonlocal failed
                if not batch or writer is None or failed is not None:
                    batch.clear()
                    return
                try:
                    arrays: dict[str, list] = {}
                    for step in batch:
                        for key, value in step.items():
                            if key.endswith("_image"):
                                value = image_array(value)
                            arrays.setdefault(key, []).append(value)
                    writer.extend({k: np.stack(v) for k, v in arrays.items()})
                except BaseException as err:  # noqa: BLE001 - e.g. ENOSPC: fail this episode, keep going
                    failed = err
                    self.get_logger().error(f"episode failed while writing: {err}")
                batch.clear()

            while True:
                try:
                    kind, ep_id, payload = self.queue.get(timeout=0.5)
                except queue.Empty:
                    if writer is not None and failed is None:
                        writer.sync_if_due()  # no new steps for a while: still durable within a second
                    continue
                if kind == "stop":
                    flush()
                    if writer is not None:
                        writer.discard()
                    return
                if kind == "begin":
                    failed = None
                    writer = self.store.begin_episode(journal=payload)
                elif kind == "step":
                    batch.append(payload)
                    if len(batch) >= WRITE_BATCH or self.queue.empty():
                        flush()
                elif kind == "discard":
                    flush()
                    writer.discard()  # the journal goes first: a discarded episode never comes back
                    writer = None
                    payload(True, f"discarded episode {ep_id}")
                elif kind == "save":
                    flush()
                    info, reply = payload
                    self._save_episode(writer, ep_id, info, reply, failed)
                    writer = None

        def _save_episode(self, writer: Any, ep_id: int, info: dict[str, Any], reply: Callable[[bool, str], None],
                          failed: BaseException | None) -> None:
            """Seal (durable: then answer), then commit. A failed commit leaves the episode in the journal."""
            profile = info.pop("profile")
            try:
                if failed is not None:
                    raise failed
                writer.seal(**info)
            except BaseException as err:  # noqa: BLE001
                writer.discard()
                reply(False, f"episode {ep_id} failed and was not saved: {err}")
                return
            n = writer.length  # episodes commit in order, each before the next is sealed: its index is known
            reply(True, f"saved episode {self.store.n_episodes} ({n} steps, {n / self.rate:.1f} s; durable)")
            t0 = time.monotonic()
            try:
                index = writer.commit(profile=profile, **info)
            except BaseException as err:  # noqa: BLE001 - keep the journal; recording stops into this store
                self.broken = (f"the store failed to commit episode {ep_id} ({err}); it is safe in the store's journal "
                               "and is committed when the store is next opened: restart the recorder")
                self.get_logger().error(self.broken)
                self.last_message = self.broken
                return
            self.saved += 1
            self.last_message = (
                f"saved episode {index} ({n} steps, {n / self.rate:.1f} s; "
                f"late {sum(info['late_frames'].values())}, missing {sum(info['missing_frames'].values())}, "
                f"dropped {info['extra']['dropped_steps']}; commit {1000 * (time.monotonic() - t0):.0f} ms)"
            )
            self.get_logger().info(self.last_message)

        # -- progress ----------------------------------------------------------------------------
        def _table(self) -> Any:
            from rich.table import Table

            ep = self.episode
            now = time.monotonic()
            title = (
                f"[bold red]● REC[/] episode {ep['id']}  {ep['steps'] / self.rate:6.1f} s  {ep['steps']} steps"
                if ep else f"idle — {self.saved} episodes saved"
            )
            table = Table(title=title, caption=self.last_message)
            for col in ("stream", "rate Hz", "late", "missing", "bad"):
                table.add_column(col, justify="right" if col != "stream" else "left")
            for name, s in self.stats.items():
                table.add_row(name, f"{s.rate(now):.1f}", str(s.late), str(s.missing), str(s.bad))
            table.add_row("writer queue", f"{self.queue.qsize()}/{self.queue.maxsize}", "", "", f"dropped {ep['dropped'] if ep else 0}")
            return table

        def _progress(self) -> None:
            if self._live is not None:
                self._live.update(self._table())
            elif self.episode is not None:
                ep, now = self.episode, time.monotonic()
                rates = ", ".join(f"{n} {s.rate(now):.0f} Hz" for n, s in self.stats.items() if s.received)
                self.get_logger().info(
                    f"episode {ep['id']}: {ep['steps'] / self.rate:.1f} s, {rates}; late {sum(ep['late'].values())}, "
                    f"dropped {ep['dropped']}, queue {self.queue.qsize()}"
                )

        def close(self) -> None:
            if self._live is not None:
                self._live.stop()
            self._tick(horizon=self._now())  # ended episodes are committed with what has arrived
            ep, self.episode = self.episode, None
            if ep is not None and ep["steps"]:  # never lose data: keep it, marked as interrupted
                info = self._episode_info(ep)
                info["success"] = None
                info["extra"]["interrupted"] = True
                done, result = threading.Event(), {}

                def reply(ok: bool, message: str) -> None:
                    result["message"] = message
                    done.set()

                self.queue.put(("save", ep["id"], (info, reply)))
                done.wait(timeout=60.0)
                print(f"[recorder] stopped while recording: {result.get('message', 'writer did not finish')} "
                      "(marked interrupted, success unknown)", file=sys.stderr, flush=True)
            elif ep is not None:
                print(f"[recorder] stopped while recording episode {ep['id']} before its first step: nothing to keep",
                      file=sys.stderr, flush=True)
            self.queue.put(("stop", -1, None))
            self.writer.join(timeout=30.0)

    return Recorder()


def main() -> None:
    from robot_stack.node import run_node

    run_node(make_recorder)  # one thread: no callback blocks (rclpy's MultiThreadedExecutor took a core)


if __name__ == "__main__":
    main()
