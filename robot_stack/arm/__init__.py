"""The arm core shared by every backend: one code path for the twin and for hardware.

``ArmNode`` (node.py) serves the contract's arm topics around an ``ArmBackend`` (backend.py),
through ``ArmSafety`` (safety.py) and the command sources (commands.py); ``Kinematics``
(kinematics.py) gives FK/IK on the profile's MJCF for Cartesian commands and ``ee_pose``.
"""
