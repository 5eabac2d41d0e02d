"""robot_stack.calibration"""
