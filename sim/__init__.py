"""robot_stack.sim"""
