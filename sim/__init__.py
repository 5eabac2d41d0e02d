"""robot_stack.sim: the MuJoCo twin behind the robot contract.

``SimRobot`` (robot.py) is the physics core and ArmBackend; ``twin_node`` serves it over ROS 2 as an
``ArmNode`` with cameras and the twin services; ``TwinEnv`` (gym_env.py) is the same robot,
observations and actions in-process; ``experts`` are scripted teleoperator-like policies for the
tasks in ``config/tasks``. See docs/sim.md.
"""
