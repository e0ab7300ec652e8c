"""ROS 2 side of seqvpr: the ``seqvpr_localizer`` lifecycle node (``node``) and its
rclpy-free logic (``params``, ``frame_queue``, ``outputs``, ``session``).

``colcon build`` installs these modules next to the generated messages
(``seqvpr_ros.msg``); ``pip install`` does not install this package.
"""
