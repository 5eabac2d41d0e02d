"""robot_stack.calibration: make the twin match the hardware.

Camera intrinsics (``intrinsics``), camera poses by hand-eye calibration (``handeye``), servo joint
offsets/directions/ranges (``arm``, ``node``) and stream latencies (``latency``), each written to a
file under ``calibration/`` that the camera nodes, the twin, the servo driver and the policy server
read. ``board`` detects the target, ``captures`` is the on-disk capture format, ``live`` captures
over the contract topics, ``synthetic`` renders ground truth with MuJoCo, ``cli`` is
``robot-stack calibrate``. See docs/calibration.md.
"""
