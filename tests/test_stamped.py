"""StampedStream: the one "value of a stream at time t" rule of the recorder and the policy history."""

from robot_stack.stamped import StampedStream


def test_the_newest_sample_at_or_before_a_time():
    s = StampedStream(4)
    assert s.at(1.0) is None and s.oldest() is None and not s
    for t in (1.0, 2.0, 3.0):
        assert s.add(t, f"v{t:g}")
    assert s.at(0.5) is None
    assert s.at(2.0) == (2.0, "v2") and s.at(2.0 - 1e-10) == (2.0, "v2")  # 1 ns of slack for float stamps
    assert s.at(2.9) == (2.0, "v2") and s.at(99.0) == (3.0, "v3")
    assert not s.add(2.5, "late")  # older than the newest: dropped, the stream stays in stamp order
    assert s.add(3.0, "again") and s.at(3.0) == (3.0, "again") and len(s) == 3  # same stamp: replaced
    for t in (4.0, 5.0):
        s.add(t, t)
    assert len(s) == 4 and s.oldest() == (2.0, "v2") and s.newest_stamp() == 5.0  # the last maxlen kept
    s.clear()
    assert not s and s.at(5.0) is None


def test_missed_frames_counts_skipped_captures_not_clock_jumps():
    from robot_stack.data.align import missed_frames

    assert missed_frames(1 / 30, 30) == 0 and missed_frames(0.0, 30) == 0 and missed_frames(-5.0, 30) == 0
    assert missed_frames(3 / 30, 30) == 2  # two frames skipped between captures three periods apart
    assert missed_frames(2.0, 30) == 59
    assert missed_frames(1.8e9, 30) == 0  # sim time against wall time: a clock jump, not 5e10 missing frames
