"""ROS 2 side of seqvpr: thin rclpy nodes over :mod:`seqvpr_core`.

The node itself arrives with the ROS 2 issue; until then this package holds
nothing and ``seqvpr_core`` is the whole product.
"""
