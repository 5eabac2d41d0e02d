"""Teleoperation devices and the teleop node that turns them into contract commands."""
