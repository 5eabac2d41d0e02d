"""Small ROS tools (probes, relays) used by launch files, tests and benchmarks."""
