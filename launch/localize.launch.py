"""Launch the seqvpr_localizer lifecycle node and bring it to active.

    ros2 launch seqvpr_ros localize.launch.py map:=/maps/route model:=/models/seqvpr.pt \
        image_topic:=/camera/image_raw odom_topic:=/odom

Every argument left empty keeps the value of params_file (config/localize.yaml by
default), so the YAML is the single place for defaults. Arguments are typed from
the node's parameter table (seqvpr_ros.params).
"""

import os

from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from lifecycle_msgs.msg import Transition

from launch import LaunchDescription
from seqvpr_ros.params import DEFAULTS, PARAMS

CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "config", "localize.yaml")
# launch argument -> node parameter: every parameter under its own name, and the two
# set on every run under short ones
SHORT = {"map": "map_path", "window": "window_max"}
ARGUMENTS = {**SHORT, **{p.name: p.name for p in PARAMS if p.name not in SHORT.values()}}
DESCRIPTIONS = {p.name: p.description for p in PARAMS}


def _typed(name: str, text: str):
    default = DEFAULTS[name]
    if isinstance(default, bool):
        if text.lower() not in ("true", "false"):
            raise ValueError(f"launch argument for {name} must be true or false, got {text!r}")
        return text.lower() == "true"
    return type(default)(text)


def node_actions(context):
    overrides = {}
    for arg, param in ARGUMENTS.items():
        text = LaunchConfiguration(arg).perform(context)
        if text != "":
            overrides[param] = _typed(param, text)
    node = LifecycleNode(
        package="seqvpr_ros", executable="seqvpr_localizer", name="seqvpr_localizer",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"), overrides])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    # activate after the launch's own configure only: not on every entry to inactive
    # (deactivate, or a configure by hand with new parameters, must stay where they are)
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, start_state="configuring", goal_state="inactive",
        handle_once=True,
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    return [node, activate, configure]


def launch_arguments(defaults: dict[str, str] | None = None) -> list:
    defaults = defaults or {}
    args = [DeclareLaunchArgument("params_file", default_value=CONFIG,
                                  description="YAML with the node's parameters"),
            DeclareLaunchArgument("namespace", default_value="",
                                  description="namespace of the node and its topics")]
    for arg, param in ARGUMENTS.items():
        args.append(DeclareLaunchArgument(
            arg, default_value=defaults.get(arg, ""),
            description=f"{DESCRIPTIONS[param]} (parameter {param}; empty: from params_file)"))
    return args


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*launch_arguments(), OpaqueFunction(function=node_actions)])
