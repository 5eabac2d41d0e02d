"""HIL wire encoding: round trips, schema violations, size limits, and go-back-N delivery."""

import math
import pickle

import msgpack
import numpy as np
import pytest

from robot_stack.policies.hil.delivery import Inbox, Outbox
from robot_stack.policies.hil.transport import (
    ActorStats, LearnerStatus, Limits, Transition, TransitionBatch, TransitionSchema, Weights, WireError, decode,
    encode,
)

SCHEMA = TransitionSchema(obs_dim=5, act_dim=3)


def transition(i: int = 0, intervention: bool = False) -> Transition:
    rng = np.random.default_rng(i)
    return Transition(obs=rng.normal(size=5).astype(np.float32), action=rng.uniform(-1, 1, 3).astype(np.float32),
                      reward=float(i % 2), next_obs=rng.normal(size=5).astype(np.float32), done=i % 3 == 0,
                      truncated=False, intervention=intervention, episode=i // 10, step=i % 10,
                      penalty=-0.02 * (i % 2))


def batch(n: int = 3, first: int = 0, base: int = 0, session: str = "s1") -> TransitionBatch:
    return TransitionBatch("robot-1", session, base, first, [transition(first + i, i == 1) for i in range(n)])


def raw(body: dict) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def valid_body() -> dict:
    return msgpack.unpackb(encode(batch(1)), raw=False)


# -- round trips ------------------------------------------------------------------------------------
def test_transitions_round_trip():
    sent = batch(4, first=7, base=5)
    got = decode(encode(sent), "transitions", schema=SCHEMA)
    assert (got.actor, got.session, got.base, got.first) == ("robot-1", "s1", 5, 7)
    assert len(got.items) == 4
    for a, b in zip(sent.items, got.items):
        for name in ("obs", "action", "next_obs"):
            assert getattr(b, name).dtype == np.float32
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert (a.reward, a.done, a.truncated, a.intervention, a.episode, a.step, a.penalty) == \
            (b.reward, b.done, b.truncated, b.intervention, b.episode, b.step, b.penalty)
    assert [t.intervention for t in got.items] == [False, True, False, False]


def test_weights_stats_status_round_trip():
    tensors = {"actor.net.0.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "actor.log_std": np.ones(2)}
    w = decode(encode(Weights(3, 1200, "mlp-5-3", tensors, stamp=12.5)), "weights",
               weights_layout={"actor.net.0.weight": (3, 4), "actor.log_std": (2,)})
    assert (w.version, w.updates, w.fingerprint, w.stamp) == (3, 1200, "mlp-5-3", 12.5)
    np.testing.assert_array_equal(w.tensors["actor.net.0.weight"], tensors["actor.net.0.weight"])
    assert w.tensors["actor.log_std"].dtype == np.float32  # float64 in, float32 on the wire
    stats = ActorStats("robot-1", "s1", 4, 2, 400, 37, 12, 0, 3, 9.9)
    assert decode(encode(stats), "actor_stats") == stats
    status = LearnerStatus({"s1": 399, "s0": -1}, {"s1": 300}, 5000, 41.5, 400, 400, 1037, 3, 4, 2, {"critic_loss": 0.25})
    assert decode(encode(status), "learner_status") == status


# -- hostile and malformed payloads ------------------------------------------------------------------
class Boom:
    def __reduce__(self):
        return (print, ("executed!",))


@pytest.mark.parametrize("payload, reason", [
    (pickle.dumps(Boom()), "not a msgpack message"),
    (pickle.dumps({"kind": "transitions"}, protocol=0), "not a msgpack message"),
    (b"", "not a msgpack message"),
    (b"\xc1", "not a msgpack message"),
    (raw([1, 2, 3]), "expected a map at the top level"),
    (raw({"kind": "exec", "v": 1}), "unknown message kind"),
    (raw({"kind": "transitions", "v": 2}), "version 2 is not supported"),
    (raw({"kind": "weights", "v": 1}), "expected a transitions message"),
    (msgpack.packb({"kind": "transitions", "v": 1, "x": msgpack.ExtType(5, b"abc")}), "ext"),
    (raw({1: 2}), "not a msgpack message"),  # strict map keys
])
def test_garbage_is_rejected_with_a_reason(payload, reason, capsys):
    with pytest.raises(WireError, match=reason) as err:
        decode(payload, "transitions", schema=SCHEMA)
    assert "\n" not in str(err.value)
    assert "executed!" not in capsys.readouterr().out


def mutate(path: list, value) -> bytes:
    body = valid_body()
    node = body
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return raw(body)


@pytest.mark.parametrize("path, value, reason", [
    (["actor"], 7, "transitions.actor: expected a name"),
    (["actor"], "x" * 500, "expected a name"),
    (["actor"], "a b;rm -rf", "expected a name"),
    (["base"], -1, "transitions.base: expected an integer"),
    (["base"], 1.5, "expected an integer"),
    (["first"], True, "expected an integer"),
    (["items"], [], "expected 1-512 transitions"),
    (["items"], "abc", "expected 1-512 transitions"),
    (["session"], KeyError, "missing field"),
    (["shell"], "ls", "unknown field"),
    (["items", 0, "reward"], float("nan"), "reward: expected a finite number"),
    (["items", 0, "reward"], float("inf"), "finite number"),
    (["items", 0, "reward"], "1.0", "finite number"),
    (["items", 0, "done"], 1, "done: expected true/false"),
    (["items", 0, "episode"], -3, "episode: expected an integer"),
    (["items", 0, "obs", "dtype"], "object", "obs.dtype: expected one of float32"),
    (["items", 0, "obs", "dtype"], "float64", "expected one of float32"),
    (["items", 0, "obs", "shape"], [6], r"obs.shape: expected \[5\]"),
    (["items", 0, "obs", "shape"], [5, 1], r"expected \[5\]"),
    (["items", 0, "obs", "shape"], [-5], "non-negative integers"),
    (["items", 0, "obs", "shape"], list(range(1, 20)), "at most 8"),
    (["items", 0, "action", "data"], b"\x00" * 8, "action.data: expected 12 bytes"),
    (["items", 0, "action", "data"], [0, 0, 0], "expected 12 bytes"),
    (["items", 0, "next_obs", "data"], np.array([1, 2, np.nan, 4, 5], np.float32).tobytes(), "NaN or inf"),
    (["items", 0, "obs", "pickle"], b"x", "unknown field"),
])
def test_schema_violations_are_rejected(path, value, reason):
    with pytest.raises(WireError, match=reason):
        decode(mutate(path, value), "transitions", schema=SCHEMA)


def test_size_limits():
    payload = encode(batch(20))
    with pytest.raises(WireError, match="exceeds the limit"):
        decode(payload, "transitions", schema=SCHEMA, limits=Limits(max_message_bytes=len(payload) - 1))
    with pytest.raises(WireError, match="expected 1-8 transitions|not a msgpack"):
        decode(payload, "transitions", schema=SCHEMA, limits=Limits(max_batch=8))
    # a huge declared length is refused by the unpacker before any allocation
    bomb = b"\x81\xa4kind\xdd\xff\xff\xff\xff"  # map{"kind": array32 of 4 billion}
    with pytest.raises(WireError, match="not a msgpack message"):
        decode(bomb, "transitions", schema=SCHEMA)
    deep = b"\x91" * 100_000 + b"\x00"  # nested arrays
    with pytest.raises(WireError):
        decode(deep, "transitions", schema=SCHEMA)
    # shapes whose product overflows the message are refused without allocating
    huge = {"dtype": "float32", "shape": [2**20, 2**20, 2**20], "data": b"\x00" * 16}
    with pytest.raises(WireError, match=r"tensors\[a\].data: expected 4611686018427387904 bytes"):
        decode(raw({"kind": "weights", "v": 1, "version": 1, "updates": 0, "fingerprint": "x", "stamp": 0.0, "run": "r",
                    "tensors": {"a": huge}}),
               "weights")


def test_weights_must_match_the_actor_network():
    w = Weights(1, 10, "mlp", {"a": np.zeros((2, 2)), "b": np.zeros(3)})
    with pytest.raises(WireError, match="names do not match"):
        decode(encode(w), "weights", weights_layout={"a": (2, 2), "c": (3,)})
    with pytest.raises(WireError, match=r"weights.tensors\[b\].shape"):
        decode(encode(w), "weights", weights_layout={"a": (2, 2), "b": (4,)})
    bad = Weights(1, 10, "mlp", {"a": np.full((2, 2), math.nan)})
    with pytest.raises(ValueError, match="NaN"):
        decode(encode(bad), "weights")
    with pytest.raises(WireError, match="expected a map of 1-"):
        decode(raw({"kind": "weights", "v": 1, "version": 1, "updates": 0, "fingerprint": "x", "stamp": 0.0, "run": "r",
                    "tensors": {}}),
               "weights")


def test_learner_status_bounds():
    body = msgpack.unpackb(encode(LearnerStatus({"s": 1}, {}, 0, 0.0, 0, 0, 0, 0)), raw=False)
    body["acks"] = {"s": "many"}
    with pytest.raises(WireError, match=r"acks\[s\]"):
        decode(raw(body), "learner_status")
    body["acks"] = {f"s{i}": 0 for i in range(300)}
    with pytest.raises(WireError, match="at most 256"):
        decode(raw(body), "learner_status")


# -- delivery ----------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Link:
    """An actor's outbox and a learner's inbox; ``deliver`` passes batches unless the learner is down."""

    def __init__(self, **outbox) -> None:
        self.clock = Clock()
        self.out = Outbox("robot", "s1", clock=self.clock, **outbox)
        self.inbox = Inbox()
        self.received: list[int] = []
        self.checkpoint: tuple[dict, list] = ({}, [])

    def deliver(self, up: bool = True) -> None:
        for b in self.out.batches():
            if up:
                self.received.extend(self.inbox.accept(b))
        if up and "s1" in self.inbox.acks:
            self.out.ack(self.inbox.acks["s1"], self.inbox.durable.get("s1", -1))

    def save(self) -> None:
        self.checkpoint = (self.inbox.checkpointed(), list(self.received))

    def restart_learner(self) -> None:
        acks, received = self.checkpoint
        self.inbox, self.received = Inbox(acks), list(received)


def test_exactly_once_across_learner_outage_and_crash():
    link = Link(capacity=1000, batch=4, resend_s=2.0)
    for i in range(6):
        link.out.add(i)
    link.deliver()
    assert link.received == list(range(6))
    assert len(link.out) == 6  # received but not durable: the actor keeps them
    link.save()
    link.deliver()
    assert len(link.out) == 0  # durable: forgotten
    for i in range(6, 12):
        link.out.add(i)
        link.deliver()
    assert link.received == list(range(12)) and len(link.out) == 6
    # the learner crashes: 6-11 were received but not checkpointed; 12-15 are sent while it is down
    for i in range(12, 16):
        link.out.add(i)
        link.deliver(up=False)
    link.restart_learner()
    link.out.add(16)
    link.deliver()  # only 16 is new to the actor: a gap for the learner, nothing accepted, ack 5
    assert link.received == list(range(6)) and link.inbox.gaps == 1
    link.deliver()  # the ack fell back (restart): the actor goes back to 6 at once
    assert link.received == list(range(17))
    link.save()
    link.deliver()
    assert len(link.out) == 0
    link.inbox.accept(TransitionBatch("robot", "s1", 10, 10, [10, 11]))  # a stale duplicate
    assert link.received == list(range(17)) and link.inbox.duplicates == 2


def test_resend_after_silence_and_window():
    link = Link(batch=2, window=4, resend_s=2.0)
    for i in range(10):
        link.out.add(i)
    link.deliver(up=False)  # learner not there yet: 0-3 sent into the void (the window)
    assert link.out.next_send == 4
    link.deliver()  # nothing new within the window, no timeout yet
    assert link.received == []
    link.clock.t += 2.5
    link.deliver()  # no progress for resend_s: go back to 0; the window bounds what is in flight
    assert link.received == [0, 1, 2, 3]
    link.deliver()
    link.deliver()
    assert link.received == list(range(10)) and link.out.resends == 1


def test_outbox_bounded_and_learner_skips_what_was_dropped():
    clock = Clock()
    out = Outbox("robot", "s2", capacity=5, batch=10, window=3, clock=clock)
    for i in range(8):
        out.add(i)
    assert len(out) == 5 and out.dropped == 3 and out.base == 3
    inbox = Inbox(acks={"s2": 0})  # learner had seen 0 only
    got = []
    for b in out.batches():
        assert b.base == 3
        got += inbox.accept(b)
    assert got == [3, 4, 5]  # the window bounds what is in flight
    out.ack(inbox.acks["s2"])
    got += [x for b in out.batches() for x in inbox.accept(b)]
    assert got == [3, 4, 5, 6, 7]


def test_inbox_forgets_old_sessions():
    inbox = Inbox(max_sessions=2)
    for s in ("a", "b", "c"):
        inbox.accept(TransitionBatch("r", s, 0, 0, [1]))
    assert list(inbox.acks) == ["b", "c"]
