"""robot_stack.policies"""
