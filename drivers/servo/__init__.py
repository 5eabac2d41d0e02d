"""Servo-bus arms (Dynamixel Protocol 2.0, Feetech STS): protocol tables, emulator, driver backend, node."""
