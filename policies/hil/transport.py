"""Typed wire encoding of the actor/learner messages, carried over ROS 2 topics.

Every message is a msgpack map in the ``data`` of a ``std_msgs/UInt8MultiArray``. Nothing on the
wire is ever executed: the payload is parsed by msgpack's C unpacker with size limits on every
string, binary, array and map and with extension types refused, then checked against an explicit
schema: the message ``kind`` and ``v`` (version), the exact set of field names, each field's type
and range, each array's dtype and shape (the learner's observation and action sizes), finiteness of
every float, and the size of the whole message. Anything else is a :class:`WireError` whose message
is one line; receivers log it and carry on.

=======================  ==========================================  ===========================
topic                    kind                                        QoS
=======================  ==========================================  ===========================
``hil/transitions``      ``transitions``: a batch of steps           reliable, depth 64
``hil/weights``          ``weights``: actor parameters (float32)     reliable, transient local 1
``hil/actor_stats``      ``actor_stats``: counters of one actor      reliable, depth 10
``hil/learner_status``   ``learner_status``: acks + learner counters reliable, transient local 1
=======================  ==========================================  ===========================

Arrays travel as ``{"dtype": str, "shape": [int], "data": bytes}`` (little-endian, C order).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

VERSION = 1
KINDS = ("transitions", "weights", "actor_stats", "learner_status")
TOPICS = {"transitions": "hil/transitions", "weights": "hil/weights", "actor_stats": "hil/actor_stats",
          "learner_status": "hil/learner_status"}
NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")
DTYPES = {"float32": np.dtype("<f4")}
MAX_DIMS = 8


class WireError(ValueError):
    """A message that does not match its schema (the reason, on one line)."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a receiver accepts (checked before and while parsing)."""

    max_message_bytes: int = 64 << 20
    """The whole payload (weights are the largest message)."""
    max_batch: int = 512
    """Transitions in one message."""
    max_tensors: int = 512
    """Named arrays in one weights message."""
    max_dim: int = 1 << 20
    """Length of an observation or action vector."""


@dataclass(frozen=True)
class TransitionSchema:
    """What a transition must look like: float32 vectors of these lengths."""

    obs_dim: int
    act_dim: int


@dataclass
class Transition:
    obs: np.ndarray
    action: np.ndarray
    reward: float
    next_obs: np.ndarray
    done: bool
    """The episode ended in a terminal state (no bootstrapping)."""
    truncated: bool
    """The episode ended by a time limit or the operator (bootstrapping continues)."""
    intervention: bool
    """A human (or the scripted intervener) chose ``action``."""
    episode: int
    step: int
    penalty: float = 0.0
    """Extra reward of the discrete gripper critic (the toggle penalty)."""


@dataclass
class TransitionBatch:
    actor: str
    """Actor id (robot / machine name)."""
    session: str
    """Random id of the actor process (its sequence numbers restart with it)."""
    base: int
    """Oldest sequence number the actor still holds (everything before it is acknowledged or dropped)."""
    first: int
    """Sequence number of ``items[0]``; the others follow consecutively."""
    items: list[Transition]


@dataclass
class Weights:
    version: int
    """Increases with every publication of the learner (and across its restarts)."""
    updates: int
    """Gradient updates behind these weights."""
    fingerprint: str
    """Identifies the network layout (the actor refuses weights of another layout)."""
    tensors: dict[str, np.ndarray]
    stamp: float = 0.0
    """Wall-clock time of publication (s since the epoch; latency figures on one machine)."""
    run: str = "-"
    """The learner run that made them (a random token kept in its run folder): an actor follows one run."""


class RunPin:
    """Which learner run an actor takes weights from: the one it was started with (``learner_run``), or
    else the first it hears; weights of any other run are dropped and counted.

    It keeps a stray or second learner on the same ROS domain from steering the robot's policy. It is
    not authentication: the token travels in the clear, so anyone who can read ``hil/weights`` can copy
    it (SROS2 on a full ROS install is what keeps others off the domain; docs/hil.md).
    """

    def __init__(self, run: str = "") -> None:
        self.run, self.dropped = run, 0

    def accept(self, run: str) -> bool:
        if not self.run:
            self.run = run
        if run == self.run:
            return True
        self.dropped += 1
        return False


@dataclass
class ActorStats:
    actor: str
    session: str
    episodes: int
    successes: int
    steps: int
    intervention_steps: int
    outbox: int
    """Transitions waiting for the learner's acknowledgement."""
    dropped: int
    """Transitions dropped because the outbox was full."""
    weights_version: int
    rate_hz: float
    """Measured policy step rate."""


@dataclass
class LearnerStatus:
    acks: dict[str, int]
    """Actor session -> last sequence number received in order."""
    durable: dict[str, int]
    """Actor session -> last sequence number in the learner's checkpoint (the actor may forget it)."""
    updates: int
    updates_per_s: float
    transitions: int
    online_size: int
    demo_size: int
    weights_version: int
    episodes: int = 0
    successes: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    """Named scalar metrics of the last update (losses, temperature)."""


# -- field checkers ---------------------------------------------------------------------------
def _int(lo: int = 0, hi: int = 2**62) -> Callable[[str, Any], int]:
    def check(name: str, v: Any) -> int:
        if type(v) is not int or not lo <= v <= hi:
            raise WireError(f"{name}: expected an integer in [{lo}, {hi}], got {_show(v)}")
        return v
    return check


def _float(name: str, v: Any) -> float:
    if type(v) not in (int, float) or not math.isfinite(v):
        raise WireError(f"{name}: expected a finite number, got {_show(v)}")
    return float(v)


def _bool(name: str, v: Any) -> bool:
    if type(v) is not bool:
        raise WireError(f"{name}: expected true/false, got {_show(v)}")
    return v


def _name(name: str, v: Any) -> str:
    if type(v) is not str or not NAME.match(v):
        raise WireError(f"{name}: expected a name of 1-128 characters [A-Za-z0-9_.:/-], got {_show(v)}")
    return v


def _show(v: Any) -> str:
    text = repr(v) if not isinstance(v, (bytes, str)) or len(v) < 40 else f"{type(v).__name__} of length {len(v)}"
    return text[:60]


def _fields(kind: str, body: Any, checkers: Mapping[str, Callable[[str, Any], Any]]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise WireError(f"{kind}: expected a map, got {type(body).__name__}")
    missing = sorted(set(checkers) - set(body))
    unknown = sorted(set(body) - set(checkers))
    if missing or unknown:
        raise WireError(f"{kind}: " + "; ".join(
            ([f"missing field(s) {', '.join(missing)}"] if missing else [])
            + ([f"unknown field(s) {', '.join(map(str, unknown))[:80]}"] if unknown else [])))
    return {k: check(f"{kind}.{k}", body[k]) for k, check in checkers.items()}


def _array(name: str, v: Any, shape: tuple[int, ...] | None, limits: Limits) -> np.ndarray:
    """Decode ``{"dtype", "shape", "data"}``; ``shape`` None accepts any bounded shape."""
    f = _fields(name, v, {"dtype": lambda n, x: x, "shape": lambda n, x: x, "data": lambda n, x: x})
    dtype = DTYPES.get(f["dtype"]) if type(f["dtype"]) is str else None
    if dtype is None:
        raise WireError(f"{name}.dtype: expected one of {', '.join(DTYPES)}, got {_show(f['dtype'])}")
    dims = f["shape"]
    if (type(dims) is not list or len(dims) > MAX_DIMS
            or not all(type(d) is int and 0 <= d <= limits.max_message_bytes for d in dims)):
        raise WireError(f"{name}.shape: expected at most {MAX_DIMS} non-negative integers, got {_show(dims)}")
    if shape is not None and tuple(dims) != shape:
        raise WireError(f"{name}.shape: expected {list(shape)}, got {dims}")
    data = f["data"]
    n = math.prod(dims)
    if type(data) is not bytes or len(data) != n * dtype.itemsize:
        raise WireError(f"{name}.data: expected {n * dtype.itemsize} bytes for shape {dims}, got {_show(data)}")
    arr = np.frombuffer(data, dtype=dtype).reshape(dims).copy()  # writable, native, detached from the payload
    if not np.isfinite(arr).all():
        raise WireError(f"{name}: contains NaN or inf")
    return arr


def _pack_array(arr: np.ndarray) -> dict[str, Any]:
    arr = np.ascontiguousarray(arr, dtype=DTYPES["float32"])
    return {"dtype": "float32", "shape": list(arr.shape), "data": arr.tobytes()}


# -- encode -----------------------------------------------------------------------------------
def encode(msg: TransitionBatch | Weights | ActorStats | LearnerStatus) -> bytes:
    """Message object -> msgpack payload (validated on the way in, so a sender cannot emit junk)."""
    if isinstance(msg, TransitionBatch):
        body = {"kind": "transitions", "actor": msg.actor, "session": msg.session, "base": msg.base,
                "first": msg.first, "items": [{
                    "obs": _pack_array(t.obs), "action": _pack_array(t.action), "reward": float(t.reward),
                    "next_obs": _pack_array(t.next_obs), "done": bool(t.done), "truncated": bool(t.truncated),
                    "intervention": bool(t.intervention), "episode": int(t.episode), "step": int(t.step),
                    "penalty": float(t.penalty),
                } for t in msg.items]}
    elif isinstance(msg, Weights):
        body = {"kind": "weights", "version": msg.version, "updates": msg.updates, "fingerprint": msg.fingerprint,
                "stamp": float(msg.stamp), "run": msg.run, "tensors": {k: _pack_array(v) for k, v in msg.tensors.items()}}
    elif isinstance(msg, ActorStats):
        body = {"kind": "actor_stats", **{k: getattr(msg, k) for k in _ACTOR_STATS}}
    elif isinstance(msg, LearnerStatus):
        body = {"kind": "learner_status", **{k: getattr(msg, k) for k in _LEARNER_STATUS}}
        body["extra"] = {k: float(v) for k, v in msg.extra.items()}
    else:
        raise TypeError(f"cannot encode {type(msg).__name__}")
    body["v"] = VERSION
    return msgpack.packb(body, use_bin_type=True)


# -- decode -----------------------------------------------------------------------------------
_ACTOR_STATS = {"actor": _name, "session": _name, "episodes": _int(), "successes": _int(), "steps": _int(),
                "intervention_steps": _int(), "outbox": _int(), "dropped": _int(), "weights_version": _int(),
                "rate_hz": _float}
_LEARNER_STATUS = {"acks": None, "durable": None, "updates": _int(), "updates_per_s": _float, "transitions": _int(),
                   "online_size": _int(), "demo_size": _int(), "weights_version": _int(), "episodes": _int(),
                   "successes": _int(), "extra": None}
MAX_ACKS = 256


def _unpack(payload: bytes, limits: Limits) -> dict[str, Any]:
    if len(payload) > limits.max_message_bytes:
        raise WireError(f"message of {len(payload)} bytes exceeds the limit of {limits.max_message_bytes}")

    def no_ext(code: int, data: bytes) -> Any:
        raise WireError(f"extension type {code} is not allowed")

    try:
        body = msgpack.unpackb(
            payload, raw=False, strict_map_key=True, use_list=True, ext_hook=no_ext, max_ext_len=0,
            max_str_len=1 << 16, max_bin_len=limits.max_message_bytes,
            max_array_len=max(limits.max_batch, MAX_DIMS, 64), max_map_len=max(limits.max_tensors, 64))
    except WireError:
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure is a rejected message
        raise WireError(f"not a msgpack message ({type(err).__name__}: {str(err)[:60]})") from None
    if not isinstance(body, dict):
        raise WireError(f"expected a map at the top level, got {type(body).__name__}")
    kind, version = body.pop("kind", None), body.pop("v", None)
    if kind not in KINDS:
        raise WireError(f"unknown message kind {_show(kind)} (known: {', '.join(KINDS)})")
    if version != VERSION:
        raise WireError(f"{kind}: version {_show(version)} is not supported (this build speaks v{VERSION})")
    body["__kind__"] = kind
    return body


def decode(payload: bytes, kind: str, *, schema: TransitionSchema | None = None,
           weights_layout: Mapping[str, tuple[int, ...]] | None = None, limits: Limits = Limits()) -> Any:
    """Payload -> message object of ``kind``; anything else raises :class:`WireError`.

    ``schema`` is required for transitions; ``weights_layout`` (name -> shape), when given, must match a
    weights message exactly."""
    body = _unpack(payload, limits)
    got = body.pop("__kind__")
    if got != kind:
        raise WireError(f"expected a {kind} message, got {got}")
    if kind == "transitions":
        if schema is None:
            raise ValueError("decoding transitions needs a TransitionSchema")
        return _transitions(body, schema, limits)
    if kind == "weights":
        return _weights(body, weights_layout, limits)
    if kind == "actor_stats":
        return ActorStats(**_fields(kind, body, _ACTOR_STATS))
    f = _fields(kind, body, {k: (c or (lambda n, x: x)) for k, c in _LEARNER_STATUS.items()})
    for name in ("acks", "durable"):
        acks = f[name]
        if not isinstance(acks, dict) or len(acks) > MAX_ACKS:
            raise WireError(f"learner_status.{name}: expected a map of at most {MAX_ACKS} entries")
        f[name] = {_name(f"learner_status.{name}", k): _int(-1)(f"learner_status.{name}[{k}]", v)
                   for k, v in acks.items()}
    extra = f["extra"]
    if not isinstance(extra, dict) or len(extra) > 64:
        raise WireError("learner_status.extra: expected a map of at most 64 entries")
    f["extra"] = {_name("learner_status.extra", k): _float(f"learner_status.extra[{k}]", v) for k, v in extra.items()}
    return LearnerStatus(**f)


def _transitions(body: dict[str, Any], schema: TransitionSchema, limits: Limits) -> TransitionBatch:
    f = _fields("transitions", body, {"actor": _name, "session": _name, "base": _int(), "first": _int(),
                                      "items": lambda n, v: v})
    items = f["items"]
    if type(items) is not list or not 1 <= len(items) <= limits.max_batch:
        raise WireError(f"transitions.items: expected 1-{limits.max_batch} transitions, got {_show(items)}")
    if f["first"] < f["base"]:
        raise WireError(f"transitions: first ({f['first']}) is before base ({f['base']})")
    obs, act = (schema.obs_dim,), (schema.act_dim,)
    out = []
    for i, item in enumerate(items):
        p = f"transitions.items[{i}]"
        t = _fields(p, item, {"obs": lambda n, v: _array(n, v, obs, limits),
                              "action": lambda n, v: _array(n, v, act, limits), "reward": _float,
                              "next_obs": lambda n, v: _array(n, v, obs, limits), "done": _bool,
                              "truncated": _bool, "intervention": _bool, "episode": _int(), "step": _int(),
                              "penalty": _float})
        out.append(Transition(**t))
    f["items"] = out
    return TransitionBatch(**f)


def _weights(body: dict[str, Any], layout: Mapping[str, tuple[int, ...]] | None, limits: Limits) -> Weights:
    f = _fields("weights", body, {"version": _int(), "updates": _int(), "fingerprint": _name, "stamp": _float,
                                  "run": _name, "tensors": lambda n, v: v})
    tensors = f["tensors"]
    if not isinstance(tensors, dict) or not 1 <= len(tensors) <= limits.max_tensors:
        raise WireError(f"weights.tensors: expected a map of 1-{limits.max_tensors} arrays")
    if layout is not None and set(tensors) != set(layout):
        missing, unknown = sorted(set(layout) - set(tensors)), sorted(set(tensors) - set(layout))
        raise WireError(f"weights.tensors: names do not match the actor's network (missing "
                        f"{', '.join(missing)[:60] or 'none'}; unknown {', '.join(map(str, unknown))[:60] or 'none'})")
    f["tensors"] = {_name("weights.tensors", k): _array(f"weights.tensors[{k}]", v,
                                                         None if layout is None else tuple(layout[k]), limits)
                    for k, v in tensors.items()}
    return Weights(**f)


# -- ROS 2 binding ----------------------------------------------------------------------------
def qos(kind: str) -> Any:
    """QoS of a kind's topic: weights and learner status are latched (a restarted actor gets them at once)."""
    from robot_stack.contract import qos as make_qos

    latched = kind in ("weights", "learner_status")
    return make_qos(1 if latched else (64 if kind == "transitions" else 10), latched=latched)


def to_msg(payload: bytes) -> Any:
    from std_msgs.msg import UInt8MultiArray

    msg = UInt8MultiArray()
    msg.data = payload  # bytes -> array('B') in one copy
    return msg


def publisher(node: Any, kind: str) -> Callable[[Any], int]:
    """Publisher of one kind: ``send(message_object)`` encodes and publishes, returns the payload size."""
    from std_msgs.msg import UInt8MultiArray

    pub = node.create_publisher(UInt8MultiArray, TOPICS[kind], qos(kind))

    def send(msg: Any) -> int:
        payload = encode(msg)
        pub.publish(to_msg(payload))
        return len(payload)

    send.publisher = pub  # type: ignore[attr-defined]
    return send


@dataclass
class Rejections:
    count: int = 0
    last: str = ""


def subscribe(node: Any, kind: str, callback: Callable[[Any], None], rejections: Rejections | None = None,
              **decode_kwargs: Any) -> Rejections:
    """Subscribe to one kind; valid messages go to ``callback``, invalid ones are counted and logged (one line).

    ``decode_kwargs`` may be callables (evaluated per message), e.g. ``schema=lambda: self.schema``."""
    from std_msgs.msg import UInt8MultiArray

    rej = rejections if rejections is not None else Rejections()

    def on_message(msg: Any) -> None:
        try:
            kwargs = {k: (v() if callable(v) else v) for k, v in decode_kwargs.items()}
            obj = decode(memoryview(msg.data).tobytes(), kind, **kwargs)
        except WireError as err:
            rej.count += 1
            rej.last = str(err)
            node.get_logger().warning(f"rejected a message on {TOPICS[kind]}: {err}")
            return
        callback(obj)

    node.create_subscription(UInt8MultiArray, TOPICS[kind], on_message, qos(kind))
    return rej
