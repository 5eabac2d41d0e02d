"""Camera drivers: RealSense (pyrealsense2) and OpenCV (V4L2 devices, video files, URLs) nodes.

Both publish one profile camera on the contract topics through :class:`CameraPublisher`.
"""
