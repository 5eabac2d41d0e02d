"""The HIL actor takes weights only from the learner run it follows, and says so when it drops others."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import wait_for
from std_msgs.msg import UInt8MultiArray
from test_hil_nodes import Output, actor_cmd, decoded, learner_cmd, run_config  # noqa: F401 - run_config: fixture

from robot_stack.policies.hil import transport
from robot_stack.policies.hil.learner_node import run_token
from robot_stack.policies.hil.transport import RunPin, Weights, WireError


def test_weights_carry_the_learner_run() -> None:
    w = transport.decode(transport.encode(Weights(1, 2, "mlp", {"a": np.zeros(3, np.float32)}, run="run-1")), "weights")
    assert w.run == "run-1"
    body = transport.encode(Weights(1, 2, "mlp", {"a": np.zeros(3, np.float32)}, run="run-1"))
    with pytest.raises(WireError, match="weights.run"):
        transport.decode(body.replace(b"run-1", b"r\x00n-1"), "weights")


def test_run_pin_follows_one_run() -> None:
    pin = RunPin()
    assert pin.accept("a") and pin.accept("a") and not pin.accept("b") and pin.dropped == 1
    given = RunPin("b")
    assert not given.accept("a") and given.accept("b") and given.run == "b"


def test_run_token_is_kept_across_learner_restarts(tmp_path) -> None:
    token = run_token(tmp_path / "run")
    assert token == run_token(tmp_path / "run") and transport.NAME.match(token)
    assert run_token(tmp_path / "other") != token


def test_actor_drops_weights_of_another_learner(ros, spawn, tmp_path, run_config) -> None:  # noqa: F811
    config, _ = run_config
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run_token").write_text("trusted-run\n")
    weights, stats = decoded(ros, "weights"), decoded(ros, "actor_stats")
    spawn(["twin_node", "--ros-args", "-p", "cameras:=none"])
    spawn(learner_cmd(run_dir, config))
    actor = Output(spawn(actor_cmd(config, "learner_run:=trusted-run")))
    wait_for(lambda: actor.count("weights v1") and weights, 120, "the actor loading the learner's weights")
    genuine = weights[-1]
    assert genuine.run == "trusted-run"
    stranger = Weights(genuine.version + 100, genuine.updates + 1, genuine.fingerprint,
                       {k: np.zeros_like(v) for k, v in genuine.tensors.items()}, run="stranger")
    pub = ros.node.create_publisher(UInt8MultiArray, transport.TOPICS["weights"], transport.qos("weights"))
    pub.publish(UInt8MultiArray(data=transport.encode(stranger)))
    wait_for(lambda: actor.count("from learner run stranger: this actor follows run trusted-run"), 30,
             f"the actor dropping the stranger's weights; output:\n{''.join(actor.lines[-20:])}")
    n = len(stats)
    wait_for(lambda: len(stats) > n + 1, 10, "the actor's next stats")
    assert stats[-1].weights_version < stranger.version  # still the trusted learner's weights
