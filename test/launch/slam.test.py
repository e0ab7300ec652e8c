"""launch_testing: ``slam.launch.py`` closing the loop on a revisit.

The robot drives Nordland summer frames 1-600 twice (stamps at 10 Hz, odometry x =
the route position in metres, both passes on the same coordinates). In slam mode the
map grows from its own windows: no loop closure may be published during the first
pass (no revisit yet), the second pass closes the loop on the right places, LIO-SAM's
``[t_cur, t_prev]`` and the RViz markers follow every closure, and ``save_map`` writes
the grown map.

    launch_test test/launch/slam.test.py      # in a shell with the workspace sourced
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
import time
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import rclpy
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from visualization_msgs.msg import Marker

from launch import LaunchDescription

sys.path.insert(0, str(Path(__file__).parent))
from probe import CONFIG, NORDLAND, Probe, diagnostic_values, nordland, stamp_ns  # noqa: E402

WORK = Path(tempfile.mkdtemp(prefix="seqvpr_slam_test_"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
MISSING = None if NORDLAND.is_dir() else f"{NORDLAND} is not present"
PASS, WINDOW, PERIOD_NS = 600, 10, 100_000_000


def generate_test_description():
    if MISSING:
        return LaunchDescription([launch_testing.actions.ReadyToTest()])
    launch_file = Path(get_package_share_directory("seqvpr_ros")) / "launch" / "slam.launch.py"
    args = {"model": str(CONFIG), "window": str(WINDOW), "device": "cpu", "odom_topic": "odom",
            "publish_lio_sam": "true", "publish_markers": "true", "queue_size": "100",
            "map_save_path": str(WORK / "grown")}
    return LaunchDescription([
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                 launch_arguments=args.items()),
        launch_testing.actions.ReadyToTest(),
    ])


@unittest.skipIf(MISSING, MISSING)
class TestSlamNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.probe = Probe()

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()
        rclpy.shutdown()

    def test_0_revisit_closes_the_loop_lio_sam_markers_save_map(self):
        probe = self.probe
        probe.wait_for(lambda: probe.state() == "active", 180, "state active")
        probe.subscribed()
        probe.subscribed("odom")
        time.sleep(1.0)
        route = nordland("summer", 0, PASS)
        t0 = probe.now_ns()
        stamps = [t0 + n * PERIOD_NS for n in range(2 * PASS)]
        probe.stream(route * 2, 40.0, stamps_ns=stamps, ahead=50,  # nothing dropped
                     odom_x=[float(i % PASS) for i in range(2 * PASS)])
        windows = 2 * PASS - WINDOW + 1
        probe.wait_for(lambda: probe.count("matches") >= windows, 120, "every window")
        second_pass = t0 + PASS * PERIOD_NS
        loops = [m for _, m in probe.got["loops"]]
        first = [lc for lc in loops if stamp_ns(lc.query_stamp) < second_pass]
        self.assertEqual(first, [], "no loop closure before the route is driven again")
        true = [lc for lc in loops
                if abs(lc.match_pose.position.x - lc.query_pose.position.x) <= 1.0]
        revisit_windows = PASS - WINDOW + 1
        print(f"MEASURED slam loop closures at the default gate, summer 1-600 driven twice: "
              f"{len(loops)} closures, {len(loops) - len(true)} false, 0 in the first pass, "
              f"recall {len(true) / revisit_windows:.3f} of {revisit_windows} revisit windows")
        self.assertEqual(len(true), len(loops))
        self.assertGreater(len(true) / revisit_windows, 0.9)
        for lc in loops:
            self.assertTrue(lc.has_query_pose and lc.has_match_pose)
            self.assertLess(lc.match_id, lc.query_id)
            self.assertGreaterEqual(lc.consistent_windows, 15)
        # LIO-SAM: [t_cur, t_prev] in seconds, one per closure (all with this run's keyframes)
        probe.wait_for(lambda: probe.count("lio") >= len(loops), 10, "LIO-SAM messages")
        lio = [m.data for _, m in probe.got["lio"]]
        self.assertEqual(len(lio), len(loops))
        for (t_cur, t_prev), lc in zip(lio, loops, strict=True):
            self.assertAlmostEqual(t_cur, stamp_ns(lc.query_stamp) * 1e-9, places=6)
            self.assertAlmostEqual(t_cur - t_prev, PASS * PERIOD_NS * 1e-9, delta=0.15)
        # RViz: a line from the query pose to the matched keyframe's pose per closure
        probe.wait_for(lambda: probe.count("markers") >= len(loops), 10, "markers")
        for (_, markers), lc in zip(probe.got["markers"], loops, strict=True):
            (marker,) = markers.markers
            self.assertEqual((marker.type, marker.header.frame_id), (Marker.LINE_LIST, "map"))
            self.assertEqual([p.x for p in marker.points],
                             [lc.query_pose.position.x, lc.match_pose.position.x])
        # the grown map, saved on request
        response = probe.save_map()
        self.assertTrue(response.success, response.message)
        from seqvpr_core.maps import PlaceMap

        grown = PlaceMap.load(WORK / "grown")
        self.assertEqual(len(grown), windows)
        self.assertEqual(grown.keyframes[windows - 1].x, float(PASS - 1))
        def diagnostics():
            return diagnostic_values(probe.got["diagnostics"][-1][1])

        probe.wait_for(lambda: diagnostics()["map size"] == str(windows), 10,
                       "the map size in /diagnostics")  # published once a second
        self.assertEqual(diagnostics()["frames dropped"], "0")

    def test_1_shutdown(self):
        self.assertTrue(self.probe.transition("shutdown"))


@launch_testing.post_shutdown_test()
@unittest.skipIf(MISSING, MISSING)
class TestAfterShutdown(unittest.TestCase):
    def test_the_node_exited_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
