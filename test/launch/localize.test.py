"""launch_testing: ``localize.launch.py`` as a robot meets it.

A map of the 2400 summer frames of Nordland (built with ``seqvpr build-map``), the
2400 winter frames published as a camera (``sensor_msgs/Image`` at 10 Hz, then 25 Hz),
real subscribers on every output. One launched node goes through every check in turn:
matches and loop closures equal to offline ``seqvpr localize`` on the same frames,
descriptors, diagnostics, latency and memory, malformed messages, every lifecycle
transition and back, compressed input, odometry, overload, shutdown. The node runs with
the robot's cv_bridge (built for numpy 1.x, broken under our numpy 2) first on its
PYTHONPATH, as on a robot with ROS from apt.

    launch_test test/launch/localize.test.py      # in a shell with the workspace sourced

Measurements are printed as ``MEASURED ...`` lines.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest
from pathlib import Path

import launch_testing
import launch_testing.actions
import launch_testing.asserts
import numpy as np
import rclpy
from ament_index_python.packages import get_package_share_directory
from launch.actions import IncludeLaunchDescription, SetEnvironmentVariable
from launch.launch_description_sources import PythonLaunchDescriptionSource

from launch import LaunchDescription

sys.path.insert(0, str(Path(__file__).parent))
from probe import (  # noqa: E402
    CONFIG,
    NORDLAND,
    REPO,
    Probe,
    compressed,
    diagnostic_values,
    image,
    nordland,
    rss_mb,
    stamp_ns,
)

WORK = Path(tempfile.mkdtemp(prefix="seqvpr_localize_test_"))
atexit.register(shutil.rmtree, WORK, ignore_errors=True)
ROBOT_CV_BRIDGE = Path(os.environ.get(
    "SEQVPR_ROBOT_CV_BRIDGE", REPO.parent / "shared" / "ros2" / "robot-cv_bridge-numpy1.tar.gz"))
MISSING = [str(p) for p in (NORDLAND, ROBOT_CV_BRIDGE) if not p.exists()]
WINDOW, MAP_SIZE, QUEUE = 10, 2391, 100
SLOW_PART = 600  # frames published at 10 Hz (latency); the rest at 25 Hz
STARTED = time.monotonic()


def _seqvpr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "seqvpr_core.cli.main", *args], check=True,
                   stdout=subprocess.DEVNULL)


def generate_test_description():
    if MISSING:
        return LaunchDescription([launch_testing.actions.ReadyToTest()])
    _seqvpr("build-map", "--images", str(NORDLAND / "summer"), "--model", str(CONFIG),
            "--window", str(WINDOW), "--device", "cpu", "--out", str(WORK / "map"))
    _seqvpr("localize", "--map", str(WORK / "map"), "--images", str(NORDLAND / "winter"),
            "--device", "cpu", "--out", str(WORK / "offline.jsonl"))
    with tarfile.open(ROBOT_CV_BRIDGE) as tar:
        tar.extractall(WORK / "robot", filter="data")
    global STARTED
    STARTED = time.monotonic()
    launch_file = Path(get_package_share_directory("seqvpr_ros")) / "launch" / "localize.launch.py"
    return LaunchDescription([
        SetEnvironmentVariable("PYTHONPATH", f"{WORK / 'robot'}:{os.environ['PYTHONPATH']}"),
        IncludeLaunchDescription(PythonLaunchDescriptionSource(str(launch_file)),
                                 launch_arguments={"map": str(WORK / "map"), "device": "cpu",
                                                   "queue_size": str(QUEUE)}.items()),
        launch_testing.actions.ReadyToTest(),
    ])


def node_output(proc_output) -> str:
    return "".join(io.text.decode(errors="replace") for io in proc_output
                   if io.process_name.startswith("seqvpr_localizer"))


def node_process(proc_output):
    for io in proc_output:
        if io.process_name.startswith("seqvpr_localizer"):
            return io
    raise AssertionError("the node printed nothing yet")


def latest_diagnostics(probe: Probe, since: int = 0) -> dict:
    return diagnostic_values(probe.got["diagnostics"][-1][1]) if \
        probe.count("diagnostics") > since else {}


@unittest.skipIf(MISSING, f"missing: {MISSING}")
class TestLocalizeNode(unittest.TestCase):
    """Checks run in order on one node (unittest sorts them by name)."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.probe = Probe()
        cls.winter = nordland("winter")
        cls.offline = [json.loads(line) for line in (WORK / "offline.jsonl").open()]
        cls.offline_loops = [json.loads(line) for line in (WORK / "offline.loops.jsonl").open()]

    @classmethod
    def tearDownClass(cls):
        cls.probe.close()
        rclpy.shutdown()

    def assert_like_offline(self, msgs, first_window: int, top: int = 5) -> None:
        """PlaceMatchArrays equal the offline windows from ``first_window`` on."""
        for k, msg in enumerate(msgs):
            rec = self.offline[first_window + k]
            self.assertEqual([m.keyframe_id for m in msg.matches],
                             [m["id"] for m in rec["matches"]][:top], f"window {k}")
            np.testing.assert_allclose([m.score for m in msg.matches],
                                       [m["score"] for m in rec["matches"]][:top], atol=1e-4)

    def test_00_active_after_launch(self, proc_output):
        self.probe.wait_for(lambda: self.probe.state() == "active", 180, "state active")
        print(f"MEASURED launch to active: {time.monotonic() - STARTED:.1f} s "
              f"(map of {MAP_SIZE} entries)")
        self.assertNotIn("compiled using NumPy", node_output(proc_output))

    def test_01_stream_matches_offline_latency_memory(self, proc_output):
        probe, n0, l0 = self.probe, self.probe.count("matches"), self.probe.count("loops")
        probe.subscribed()
        pid = node_process(proc_output).pid
        rss = []

        def sample(i):
            if i % 100 == 99:
                rss.append(rss_mb(pid))

        ahead = QUEUE // 2  # a busy CI machine slows the node: it must drop nothing here
        stamps = probe.stream(self.winter[:SLOW_PART], 10.0, on_frame=sample, ahead=ahead)
        stamps += probe.stream(self.winter[SLOW_PART:], 25.0, ahead=ahead,
                               on_frame=lambda i: sample(i + SLOW_PART))
        probe.wait_for(lambda: probe.count("matches") >= n0 + MAP_SIZE, 120, "every window")
        got = probe.got["matches"][n0:]
        self.assertEqual(len(got), MAP_SIZE)
        self.assertEqual([stamp_ns(m.header.stamp) for _, m in got], stamps[WINDOW - 1:])
        self.assert_like_offline([m for _, m in got], 0)
        # loop closures: the same windows and matches as offline
        loops = probe.since("loops", l0)
        index_of = {s: i for i, s in enumerate(stamps)}
        node_loops = [(index_of[stamp_ns(lc.query_stamp)], lc.match_id) for lc in loops]
        self.assertEqual(node_loops, [(r["query_index"], r["match_id"])
                                      for r in self.offline_loops])
        true = sum(abs(match - (q - WINDOW + 1)) <= 1 for q, match in node_loops)
        print(f"MEASURED loop closures at the default gate, winter against the summer map: "
              f"{len(node_loops)} closures, {len(node_loops) - true} false, precision "
              f"{true / max(1, len(node_loops)):.3f}, recall {true / MAP_SIZE:.3f}")
        # latency: image stamp -> arrival of its PlaceMatchArray, frames published at 10 Hz
        lat = np.array([(t - stamp_ns(m.header.stamp)) / 1e6
                        for t, m in got[:SLOW_PART - WINDOW + 1]])
        print(f"MEASURED latency at 10 Hz over {lat.size} windows: p50 "
              f"{np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms")
        base, peak = rss[1], max(rss[1:])
        print(f"MEASURED node RSS over 2400 frames: {base:.0f} MB after 200 frames, peak "
              f"{peak:.0f} MB, last {rss[-1]:.0f} MB ({100 * (peak / base - 1):+.1f}%)")
        self.assertLessEqual(peak, base * 1.05)
        type(self).stream_window = (got[0][0], got[SLOW_PART - WINDOW][0])

    def test_02_descriptors(self):
        from seqvpr_core.maps import PlaceMap

        descriptors = [m for _, m in self.probe.got["descriptors"]][:MAP_SIZE]
        self.assertEqual(len(descriptors), MAP_SIZE)
        self.assertEqual({d.model_id for d in descriptors}, {descriptors[0].model_id})
        self.assertTrue(descriptors[0].model_id.startswith("efficientnet_lite0+cat:"))
        index = PlaceMap.load(WORK / "map").searched_index
        for k in range(0, MAP_SIZE, 97):
            d = np.asarray(descriptors[k].descriptor, dtype=np.float32)
            self.assertEqual(d.size, 8960)
            self.assertAlmostEqual(float(np.linalg.norm(d)), 1.0, places=4)
            best = self.offline[k]["matches"][0]
            self.assertAlmostEqual(float(d @ index.reconstruct(best["id"])), best["score"],
                                   places=4)

    def test_03_diagnostics(self):
        start, end = self.stream_window  # arrival of the 10 Hz part's first and last windows
        during = [diagnostic_values(m) for t, m in self.probe.got["diagnostics"]
                  if start + 12e9 < t < end]
        self.assertTrue(during)
        for v in during:
            self.assertAlmostEqual(float(v["frame rate (Hz)"]), 10.0, delta=1.0)
            self.assertAlmostEqual(float(v["window rate (Hz)"]), 10.0, delta=1.0)
            self.assertLess(float(v["latency median (ms)"]), 1000.0)
            self.assertEqual((v["frames dropped"], v["frames rejected"], v["map size"]),
                             ("0", "0", str(MAP_SIZE)))
            self.assertEqual(v["time resets (stamps went back)"], "0")
            self.assertEqual((v["level"], v["message"]), (0, "ok"))
        print(f"MEASURED node diagnostics at 10 Hz: latency median "
              f"{during[-1]['latency median (ms)']} ms, max {during[-1]['latency max (ms)']} ms")
        self.probe.wait_for(lambda: latest_diagnostics(self.probe).get("frames received")
                            == "2400", 10, "2400 frames received")

    def test_04_malformed_messages_are_counted_logged_once_and_matching_goes_on(
            self, proc_output):
        probe, n0, w = self.probe, self.probe.count("matches"), self.winter
        rgb = w[0]
        full = rgb.tobytes()
        bad = {  # reason the node logs -> a message with that problem
            "'32FC1' is a depth, float or generic matrix image":
                dict(encoding="32FC1", step=64 * 4, data=bytes(64 * 4 * 32)),
            "'16UC1' is a depth": dict(encoding="16UC1", step=128, data=bytes(128 * 32)),
            "'yuv444' is not supported": dict(encoding="yuv444"),
            "step 96 is shorter than one row (99 bytes)": dict(width=33, step=96,
                                                               data=bytes(96 * 32)),
            "rgb8 image is empty (0x0 pixels)": dict(height=0, width=0, step=0, data=b""),
            "rgb8 image is empty (": dict(height=0, data=b""),  # one kind with 0x0
            "(truncated)": dict(data=full[:-100]),
            "data has 6244 bytes, height x step is 6144": dict(data=full + bytes(100)),
            "4:2:2 needs an even width": dict(encoding="yuv422", width=63, step=126,
                                              data=bytes(126 * 32)),
        }
        good = w[1000:1060]
        frames, kinds = [], list(bad.items())
        for i, rgb_good in enumerate(good):
            frames.append(("good", rgb_good))
            if 10 <= i < 10 + len(kinds):  # each problem twice, inside the stream
                frames += [("bad", kinds[i - 10][1])] * 2
        for kind, payload in frames:
            stamp = probe.now_ns()
            probe.pub["image"].publish(image(payload, stamp) if kind == "good"
                                       else image(rgb, stamp, **payload))
            time.sleep(0.05)
        probe.wait_for(lambda: probe.count("matches") >= n0 + len(good), 60,
                       "the good frames' windows")
        # the good frames are one unbroken stream (after the first stream's last frames):
        # their windows equal the offline ones
        self.assert_like_offline(probe.since("matches", n0)[WINDOW - 1:], 1000)
        expected = str(2 * len(bad))
        probe.wait_for(lambda: latest_diagnostics(probe).get("frames rejected") == expected,
                       10, f"{expected} rejected frames in /diagnostics")
        v = latest_diagnostics(probe)
        self.assertEqual(v["level"], 1)
        self.assertIn("frames rejected in the last 10 s", v["message"])
        log = node_output(proc_output)
        for reason in bad:  # each kind of problem once (numbers aside), though sent twice
            self.assertEqual(log.count(reason), 1, f"logged once: {reason}")
        self.assertNotIn("OpenCV", log)
        self.assertNotIn("Traceback", log)
        # a clock that jumps back (a bag played again): windows restart, counted
        n1, back = probe.count("matches"), probe.now_ns() - 3_600_000_000_000
        probe.stream(w[1000:1012], 20.0, stamps_ns=[back + k * 100_000_000 for k in range(12)])
        probe.wait_for(lambda: latest_diagnostics(probe).get("time resets (stamps went back)")
                       == "1", 10, "one time reset in /diagnostics")
        probe.wait_for(lambda: probe.count("matches") >= n1 + 3, 10, "windows after the jump")
        self.assert_like_offline(probe.since("matches", n1), 1000)  # none spans the jump

    def test_05_every_lifecycle_transition_and_back(self, proc_output):
        probe, w = self.probe, self.winter
        self.assertTrue(probe.transition("deactivate"))
        time.sleep(2.0)  # the launch file must not re-activate on entering inactive
        self.assertEqual(probe.state(), "inactive")
        probe.subscribed(count=0)
        n0 = probe.count("matches")
        probe.stream(w[1000:1020], 20.0)
        time.sleep(1.5)
        self.assertEqual(probe.count("matches"), n0)  # inactive: nothing processed
        self.assertTrue(probe.transition("activate"))
        probe.subscribed()
        probe.stream(w[1000:1020], 20.0)
        probe.wait_for(lambda: probe.count("matches") >= n0 + 11, 30, "matches after activate")
        self.assert_like_offline(probe.since("matches", n0), 1000)  # windows restarted
        self.assertTrue(probe.transition("deactivate"))
        self.assertTrue(probe.transition("cleanup"))
        self.assertEqual(probe.state(), "unconfigured")
        # a configure that fails names the reason and stays unconfigured
        self.assertEqual(probe.set_parameters(map_path=str(WORK / "nope")), [True])
        self.assertFalse(probe.transition("configure"))
        self.assertEqual(probe.state(), "unconfigured")
        self.assertIn("configure failed", node_output(proc_output))
        # changed parameters take effect at the next configure
        self.assertEqual(probe.set_parameters(map_path=str(WORK / "map"), top_k=3,
                                              compressed=True), [True, True, True])
        self.assertTrue(probe.transition("configure"))
        time.sleep(2.0)
        self.assertEqual(probe.state(), "inactive")
        self.assertTrue(probe.transition("activate"))
        self.assertEqual(probe.state(), "active")

    def test_06_compressed_jpeg_and_png(self):
        probe, w = self.probe, self.winter
        probe.subscribed("image/compressed")
        for fmt, windows in (("png", 21), ("jpeg", 30)):  # a fresh stream, then one that goes on
            n0 = probe.count("matches")
            probe.stream(w[1000:1030], 20.0, fmt=fmt)
            probe.wait_for(lambda n=n0 + windows: probe.count("matches") >= n, 30,
                           f"{fmt} matches")
            msgs = probe.since("matches", n0)[-21:]  # the windows of this format's frames
            self.assertTrue(all(len(m.matches) == 3 for m in msgs))  # top_k 3 from configure
            if fmt == "png":  # lossless: the offline windows exactly
                self.assert_like_offline(msgs, 1000, top=3)
            else:  # jpeg changes pixels a little: the same places
                hits = sum(abs(m.matches[0].keyframe_id - (1000 + k)) <= 1
                           for k, m in enumerate(msgs))
                self.assertGreaterEqual(hits, 14)
        r0 = int(latest_diagnostics(probe)["frames rejected"])
        for fmt, data in (("png", b""), ("jpeg", b"\xff\xd8 not a jpeg"), ("tiff", b"II*\0"),
                          ("16UC1; compressedDepth png", b"\0" * 16)):
            probe.pub["compressed"].publish(compressed(w[0], probe.now_ns(), fmt, data))
        probe.wait_for(lambda: latest_diagnostics(probe)["frames rejected"] == str(r0 + 4), 10,
                       "4 more rejected frames")

    def reconfigure(self, **values) -> None:
        """deactivate, cleanup, new parameters, configure, activate; wait for discovery."""
        probe = self.probe
        for step in ("deactivate", "cleanup"):
            self.assertTrue(probe.transition(step))
        self.assertEqual(probe.set_parameters(**values), [True] * len(values))
        for step in ("configure", "activate"):
            self.assertTrue(probe.transition(step))
        probe.subscribed()
        if values.get("odom_topic"):
            probe.subscribed("odom")
        time.sleep(1.0)  # both subscriptions matched, not only the first

    def test_07_odometry_through_message_filters(self):
        probe, w = self.probe, self.winter
        self.reconfigure(compressed=False, top_k=5, odom_topic="odom")
        # a stretch the offline run closes the loop on all along: 17 closures once 15
        # windows of the fresh stream agree
        closed = {r["query_index"] for r in self.offline_loops}
        start = next(q - WINDOW + 1 for q in sorted(closed)
                     if all(q + k in closed for k in range(31)))
        n0, l0 = probe.count("matches"), probe.count("loops")
        xs = [float(start + i) for i in range(40)]
        stamps = probe.stream(w[start:start + 40], 10.0, odom_x=xs)
        probe.wait_for(lambda: probe.count("matches") >= n0 + 31, 30, "matches with odometry")
        self.assert_like_offline(probe.since("matches", n0), start)
        loops = probe.since("loops", l0)
        self.assertGreaterEqual(len(loops), 15)
        x_at = dict(zip(stamps, xs, strict=True))
        for lc in loops:
            self.assertTrue(lc.has_query_pose)
            self.assertEqual(lc.query_pose.position.x, x_at[stamp_ns(lc.query_stamp)])
            self.assertLessEqual(abs(lc.match_id - (lc.query_pose.position.x - WINDOW + 1)), 1)

    def test_08_overload_drops_the_oldest_and_says_so(self):
        probe = self.probe
        self.reconfigure(odom_topic="", queue_size=4, max_batch=1)
        probe.stream(self.winter[:600], 200.0)
        probe.wait_for(lambda: "overloaded" in latest_diagnostics(probe).get("message", ""), 20,
                       "an overload warning")
        v = latest_diagnostics(probe)
        self.assertEqual(v["level"], 1)
        self.assertGreater(int(v["frames dropped"]), 0)
        print(f"MEASURED overload (queue 4, one frame per encoder call, 600 frames at 200 Hz): "
              f"{v['frames dropped']} of {v['frames received']} received dropped")

    def test_09_shutdown(self, proc_info, proc_output):
        self.assertTrue(self.probe.transition("shutdown"))
        proc_info.assertWaitForShutdown(process=node_process(proc_output).action, timeout=30)


@launch_testing.post_shutdown_test()
@unittest.skipIf(MISSING, f"missing: {MISSING}")
class TestAfterShutdown(unittest.TestCase):
    def test_the_node_exited_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
