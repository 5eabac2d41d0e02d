"""robot_stack.drivers"""
