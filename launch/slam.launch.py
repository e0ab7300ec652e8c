"""Launch seqvpr_localizer in slam mode: the map grows from the robot's own keyframes,
revisits become loop closures (optionally on LIO-SAM's lio_loop/loop_closure_detection).

    ros2 launch seqvpr_ros slam.launch.py model:=/models/seqvpr.pt window:=10 \
        image_topic:=/camera/image_raw odom_topic:=/odom publish_lio_sam:=true \
        map_save_path:=/maps/today map_index:=hnsw

Same arguments as localize.launch.py, with mode slam; save the map any time with
``ros2 service call /seqvpr_localizer/save_map std_srvs/srv/Trigger``.
"""

import importlib.util
import os

from launch.actions import OpaqueFunction

from launch import LaunchDescription

_spec = importlib.util.spec_from_file_location(
    "seqvpr_localize_launch", os.path.join(os.path.dirname(__file__), "localize.launch.py"))
_localize = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_localize)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*_localize.launch_arguments({"mode": "slam"}),
                              OpaqueFunction(function=_localize.node_actions)])
