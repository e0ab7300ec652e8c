"""``seqvpr_localizer``: a lifecycle node over :class:`seqvpr_core.stream.StreamingLocalizer`.

configure: validate parameters, load model and map, create publishers.
activate: subscribe (sensor-data QoS) and start the worker thread.
The subscription callback only enqueues into a bounded queue (drop oldest);
the worker takes up to ``max_batch`` waiting frames, applies keyframe spacing,
decodes and encodes them in one batch, steps the localizer and publishes
(reliable QoS).
Every decision lives in seqvpr_core or in the rclpy-free modules params /
outputs / session of this package.
"""

from __future__ import annotations

import array
import signal
import threading
import time

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Pose
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import ColorRGBA, Float64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from seqvpr_core.data.poses import yaw_degrees
from seqvpr_core.data.rosbag import message_to_rgb
from seqvpr_ros.msg import LoopClosure, PlaceMatch, PlaceMatchArray, SequenceDescriptor

from .frame_queue import FrameQueue
from .outputs import (
    Diagnostics,
    PoseFields,
    RejectionLog,
    lio_sam_payload,
    loop_fields,
    split_stamp,
    window_fields,
)
from .params import PARAMS, NodeSettings, check_value, subscription_topic
from .session import ReceivedFrame, Session, open_session

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LIO_SAM_TOPIC = "lio_loop/loop_closure_detection"


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _time(stamp_ns: int) -> Time:
    sec, nsec = split_stamp(stamp_ns)
    return Time(sec=sec, nanosec=nsec)


def _pose(f: PoseFields) -> Pose:
    p = Pose()
    p.position.x, p.position.y = f.x, f.y
    o = p.orientation
    o.x, o.y, o.z, o.w = f.quaternion
    return p


class SeqvprLocalizer(LifecycleNode):
    def __init__(self, **kwargs) -> None:
        super().__init__("seqvpr_localizer", **kwargs)
        for p in PARAMS:
            self.declare_parameter(p.name, p.default,
                                   ParameterDescriptor(description=p.description))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._refuse_unavailable_transitions()
        self._session: Session | None = None
        self._queue: FrameQueue | None = None
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()  # localizer + map: worker vs save_map service
        self._subs: list = []
        self._pubs: dict = {}
        self._service = self._timer = None
        self._diag = Diagnostics()
        self._rejections = RejectionLog()
        self._marker_id = 0
        self.s: NodeSettings | None = None
        self.finalized = False  # after the shutdown transition: main() lets the process end

    def _refuse_unavailable_transitions(self) -> None:
        """rclpy raises out of spin, and the node dies, on a change_state request whose
        transition id the current state does not have (a second launch's configure, a
        script's wrong id); refuse it with success false, as for a wrong label."""
        service, machine = self._service_change_state, self._state_machine
        handle = service.callback

        def change_state(request, response):
            t = request.transition
            if not t.label and t.id not in {d[0] for d in machine.available_transitions}:
                self.get_logger().warn(f"transition {t.id} refused: not available in state "
                                       f"{machine.current_state[1]}")
                response.success = False
                return response
            return handle(request, response)

        service.callback = change_state

    # --- parameters -------------------------------------------------------------------

    def _on_set_parameters(self, params) -> SetParametersResult:
        errors = [e for p in params if (e := check_value(p.name, p.value))]
        return SetParametersResult(successful=not errors, reason="; ".join(errors))

    def _settings(self) -> NodeSettings:
        return NodeSettings.from_values({p.name: self.get_parameter(p.name).value
                                         for p in PARAMS})

    # --- lifecycle --------------------------------------------------------------------

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        """Load model and map; FAILURE (back to unconfigured) with the reason logged."""
        try:
            self.s = self._settings()
            self._session = open_session(self.s)
        except (ValueError, FileNotFoundError, ImportError, RuntimeError) as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        s = self.s
        self._queue = FrameQueue(s.queue_size)
        self._pubs = {"matches": self.create_publisher(PlaceMatchArray, "~/matches", RELIABLE),
                      "loops": self.create_publisher(LoopClosure, "~/loop_closures", RELIABLE),
                      "diag": self.create_publisher(DiagnosticArray, "/diagnostics", RELIABLE)}
        if s.publish_descriptors:
            self._pubs["descriptors"] = self.create_publisher(SequenceDescriptor,
                                                              "~/descriptors", RELIABLE)
        if s.publish_lio_sam:
            self._pubs["lio"] = self.create_publisher(Float64MultiArray, LIO_SAM_TOPIC, RELIABLE)
        if s.publish_markers:
            self._pubs["markers"] = self.create_publisher(MarkerArray, "~/markers", RELIABLE)
        if s.mode == "slam":
            self._service = self.create_service(Trigger, "~/save_map", self._on_save_map)
        self._timer = self.create_timer(s.diagnostics_period, self._publish_diagnostics)
        self.get_logger().info(f"configured: {s.mode} mode, map of "
                               f"{len(self._session.map)} entries, model {self._session.model_id}")
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        s = self.s
        msg_type = CompressedImage if s.compressed else Image
        topic = subscription_topic(s.image_topic, s.compressed)
        # sensor-data QoS, with a history as deep as our queue: frames the callback has not
        # taken yet (the worker holds the GIL) wait there instead of vanishing uncounted
        qos = QoSProfile(depth=max(s.queue_size, qos_profile_sensor_data.depth),
                         reliability=qos_profile_sensor_data.reliability,
                         durability=qos_profile_sensor_data.durability)
        if s.odom_topic:
            import message_filters

            image_sub = message_filters.Subscriber(self, msg_type, topic,
                                                   qos_profile=qos)
            odom_sub = message_filters.Subscriber(self, Odometry, s.odom_topic,
                                                  qos_profile=qos)
            self._sync = message_filters.ApproximateTimeSynchronizer(
                [image_sub, odom_sub], max(10, s.queue_size), s.sync_slop)
            self._sync.registerCallback(self._on_image)
            self._subs = [image_sub.sub, odom_sub.sub]
        else:
            self._subs = [self.create_subscription(msg_type, topic, self._on_image,
                                                   qos)]
        self._queue.reopen()
        self._worker = threading.Thread(target=self._work, name="seqvpr_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(f"active: {msg_type.__name__} on {topic}"
                               + (f", odometry {s.odom_topic}" if s.odom_topic else ""))
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._stop_stream()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._stop_stream()
        self._release()
        self.finalized = True
        return TransitionCallbackReturn.SUCCESS

    def _stop_stream(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._queue is not None:
            self._queue.clear()
            self._queue.close()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        if self._session is not None:
            self._session.localizer.reset()  # a gap in the stream: windows restart
            self._session.spacing.reset()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_publisher(pub)
        self._pubs = {}
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        self._session = self._queue = None

    # --- stream -----------------------------------------------------------------------

    def _on_image(self, image, odom: Odometry | None = None) -> None:
        """Subscription callback: enqueue only; the worker does the work."""
        if not self._queue.put((image, odom)):
            self.get_logger().warn("worker behind: dropping the oldest frames",
                                   throttle_duration_sec=5.0)

    def _work(self) -> None:
        queue = self._queue
        while True:
            items = queue.get_batch(self.s.max_batch, timeout=0.5)
            if not items:
                if queue.closed:
                    return
                continue
            try:
                self._process(items)
            except Exception as exc:  # noqa: BLE001  (a bad batch must not stop the node)
                for _ in items:
                    self._reject(f"frame skipped with its batch: {exc}")

    def _reject(self, reason: str) -> None:
        """Count every rejected frame in /diagnostics; log each kind of problem once,
        then at most once per period."""
        self._diag.reject(reason)
        line = self._rejections.line(reason)
        if line is not None:
            self.get_logger().warn(line)

    @staticmethod
    def _to_rgb(msg):
        """Our converter validates every field before numpy or OpenCV sees the data."""
        return message_to_rgb(msg, "sensor_msgs/msg/CompressedImage"
                              if isinstance(msg, CompressedImage) else "sensor_msgs/msg/Image")

    def _received(self, image, odom: Odometry | None) -> ReceivedFrame:
        pose = None
        if odom is not None:
            p = odom.pose.pose
            q = p.orientation
            pose = (p.position.x, p.position.y, yaw_degrees(q.x, q.y, q.z, q.w))
        return ReceivedFrame(_ns(image.header.stamp), pose, image.header.frame_id,
                             lambda: self._to_rgb(image))

    def _process(self, items: list) -> None:
        """The frames that queued up since the last call, encoded in one batch."""
        session = self._session
        with self._lock:
            done = session.process([self._received(*item) for item in items])
        for error in done.errors:
            self._reject(error)
        for _ in range(done.frames):
            self._diag.frame()
        for result in done.results:
            self._publish(result, result.last.source, session)
            self._diag.window(result.last.stamp_ns, self.get_clock().now().nanoseconds)

    # --- outputs ----------------------------------------------------------------------

    def _publish(self, result, frame_id: str, session: Session) -> None:
        w = window_fields(result)
        header_stamp = _time(w.stamp_ns)
        msg = PlaceMatchArray(window_start=_time(w.window_start_ns),
                              window_length=w.window_length,
                              matches=[PlaceMatch(keyframe_id=m.keyframe_id,
                                                  stamp=_time(m.stamp_ns), pose=_pose(m.pose),
                                                  has_pose=m.pose.has_pose, score=m.score,
                                                  rank=m.rank) for m in w.matches])
        msg.header.stamp, msg.header.frame_id = header_stamp, frame_id
        self._pubs["matches"].publish(msg)  # empty matches: slam mode before any candidate
        if "descriptors" in self._pubs:
            values = array.array("f", result.descriptor.astype("float32").tobytes())
            d = SequenceDescriptor(window_start=_time(w.window_start_ns),
                                   window_length=w.window_length, model_id=session.model_id,
                                   descriptor=values)
            d.header.stamp, d.header.frame_id = header_stamp, frame_id
            self._pubs["descriptors"].publish(d)
        lc = loop_fields(result)
        if lc is None:
            return
        msg = LoopClosure(query_stamp=_time(lc.query_stamp_ns),
                          match_stamp=_time(lc.match_stamp_ns), query_id=lc.query_id,
                          match_id=lc.match_id, query_pose=_pose(lc.query_pose),
                          has_query_pose=lc.query_pose.has_pose, match_pose=_pose(lc.match_pose),
                          has_match_pose=lc.match_pose.has_pose, score=lc.score,
                          consistent_windows=lc.consistent_windows)
        msg.header.stamp, msg.header.frame_id = header_stamp, frame_id
        self._pubs["loops"].publish(msg)
        payload = lio_sam_payload(result, session.first_own_id)
        if "lio" in self._pubs and payload is not None:
            self._pubs["lio"].publish(Float64MultiArray(data=payload))
        if "markers" in self._pubs and lc.query_pose.has_pose and lc.match_pose.has_pose:
            self._pubs["markers"].publish(MarkerArray(markers=[self._marker(lc)]))

    def _marker(self, lc) -> Marker:
        m = Marker(ns="seqvpr_loop_closures", id=self._marker_id, type=Marker.LINE_LIST,
                   action=Marker.ADD)
        self._marker_id += 1
        m.header.frame_id = self.s.marker_frame
        m.header.stamp = self.get_clock().now().to_msg()
        m.scale.x = 0.2
        m.color = ColorRGBA(r=1.0, g=0.2, b=0.1, a=0.9)
        m.points = [Point(x=lc.query_pose.x, y=lc.query_pose.y),
                    Point(x=lc.match_pose.x, y=lc.match_pose.y)]
        return m

    def _publish_diagnostics(self) -> None:
        if self._session is None or "diag" not in self._pubs:
            return
        q = self._queue
        level, message = self._diag.level(q.received, q.dropped)
        values = self._diag.values(q.received, q.dropped, len(q), len(self._session.map),
                                   stream=self._session.localizer.stats)
        status = DiagnosticStatus(level=DiagnosticStatus.WARN if level else DiagnosticStatus.OK,
                                  name=f"{self.get_name()}: place recognition",
                                  hardware_id=self._session.model_id, message=message,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pubs["diag"].publish(msg)

    def _on_save_map(self, request, response):
        path = self.s.map_save_path or self.s.map_path
        if not path:
            response.success, response.message = False, "set map_save_path (or map_path)"
            return response
        t0 = time.monotonic()
        try:
            with self._lock:
                saved = self._session.map.save(path)
                n = len(self._session.map)
        except (OSError, RuntimeError, ValueError) as exc:
            response.success, response.message = False, f"saving the map failed: {exc}"
            return response
        response.success = True
        response.message = f"{n} entries -> {saved} ({time.monotonic() - t0:.1f} s)"
        return response


def main(args=None) -> None:
    """Spin until Ctrl-C, an external shutdown or the shutdown transition; clean up once.

    ``ros2 launch`` forwards the terminal's Ctrl-C, so a second SIGINT arrives while
    the first is handled: ignored from then on, it cannot cut the clean-up short (an
    uncaught second KeyboardInterrupt made Python die by SIGINT, exit code -2).
    """
    rclpy.init(args=args)
    node = None
    try:
        node = SeqvprLocalizer()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok() and not node.finalized:
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if node is not None:
            node._stop_stream()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
