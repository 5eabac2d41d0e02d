"""Raw takes outside the interpreter lock: a limited subscription gets small messages byte for byte and
only the size of a large one, and Python threads run on while a large message is taken."""

import array
import threading
import time

import numpy as np
import pytest
import rclpy
from conftest import wait_for
from rclpy.serialization import serialize_message
from std_msgs.msg import Float64MultiArray

from robot_stack import bounded_take


@pytest.fixture
def pair():
    contexts = [rclpy.Context(), rclpy.Context()]
    for context in contexts:
        rclpy.init(context=context)
    sender = rclpy.create_node("bounded_take_sender", context=contexts[0])
    receiver = rclpy.create_node("bounded_take_receiver", context=contexts[1])
    executor = bounded_take.BoundedExecutor(context=contexts[1])
    executor.add_node(receiver)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield sender, receiver
    executor.shutdown()
    for context in contexts:
        context.try_shutdown()
    thread.join(5)


def test_rcl_is_bound():
    assert bounded_take._LIBS is not None, "librcl/librcutils not loadable: takes would hold the interpreter lock"


def test_small_messages_arrive_byte_for_byte_and_large_ones_as_their_size(pair):
    sender, receiver = pair
    got = []
    bounded_take.limit(receiver.create_subscription(Float64MultiArray, "bounded", got.append, 10, raw=True), 4096)
    pub = sender.create_publisher(Float64MultiArray, "bounded", 10)
    wait_for(lambda: pub.get_subscription_count() > 0, 20, "the receiver subscribed")
    small = Float64MultiArray(data=[1.0, 2.0, 3.0])
    large = Float64MultiArray(data=np.arange(1000, dtype=float).tolist())  # 8,000 bytes of values
    pub.publish(small)
    wait_for(lambda: len(got) == 1, 10, "the small message")
    pub.publish(large)
    wait_for(lambda: len(got) == 2, 10, "the large message's size")
    assert got[0] == serialize_message(small)
    assert got[1] == len(serialize_message(large)) and isinstance(got[1], int)


def test_python_threads_run_while_a_huge_message_is_taken(pair):
    """rclpy's own take of 80 MB held the lock for 200-300 ms on a 2-core VM; this counts ticks of a
    1 ms Python loop across the take (no time limit: the take must leave room for at least a few)."""
    sender, receiver = pair
    taken = []
    ticks_during = []

    def on_message(data):
        taken.append(data)

    bounded_take.limit(receiver.create_subscription(Float64MultiArray, "huge", on_message, 10, raw=True), 4096)
    pub = sender.create_publisher(Float64MultiArray, "huge", 10)
    wait_for(lambda: pub.get_subscription_count() > 0, 20, "the receiver subscribed")
    huge = Float64MultiArray()
    huge.data = array.array("d", bytes(80_000_000))  # 10M values
    original = bounded_take.take

    def counted_take(subscription):  # ticks of the loop below while the take runs
        start = ticks[0]
        data = original(subscription)
        if data is not None:
            ticks_during.append(ticks[0] - start)
        return data

    ticks, stop = [0], threading.Event()

    def loop():
        while not stop.is_set():
            time.sleep(0.001)
            ticks[0] += 1

    threading.Thread(target=loop, daemon=True).start()
    bounded_take.take = counted_take
    try:
        pub.publish(huge)
        wait_for(lambda: taken, 60, "the huge message's size")
    finally:
        bounded_take.take = original
        stop.set()
    assert taken == [len(serialize_message(huge))]
    assert ticks_during and ticks_during[0] >= 3, ticks_during
