"""Camera-to-command latency through a real ROS 2 graph: camera process -> controller process -> here.

    python benchmarks/node_latency.py [--seconds 20] [--rates 30 60] [--native] [--messages] [--out FILE.md]

Per rate, a camera process publishes 128x96 rgb8 ``sensor_msgs/Image``
frames stamped with the wall-clock publish time and this process subscribes
to ``/cmd_vel``: latency = receive time - command stamp (each command carries
its frame's stamp). Two nodes answer the frames in turn, in the same run:

* the reference, a trivial rclpy node that answers each frame with a
  ``TwistStamped`` and does nothing else (``rclpy.spin``, rclpy's default
  executor): the graph's own round trip, camera -> node -> here;
* the controller, ``python -m lnn_nav.nodes.controller`` (a freshly
  initialised default policy saved to a temporary directory,
  ``torch_threads:=1``, its ``executor`` parameter as given by ``--executor``,
  ``raw_io`` as by default: frames read and commands written as CDR bytes).

With ``--messages``, the controller once more with ``raw_io:=false`` (rclpy's
message conversion both ways, the reference for ``raw_io``), in the same run.

With ``--native``, a third node in the same run: ``benchmarks/native_relay.c``,
the trivial node written in C on rcl (the C library under rclpy and rclcpp),
built here with ``cc`` against the ``ros-jazzy-*`` wheels' headers and
libraries: the round trip without Python in the middle node, the floor a
native controller would stand on.

Beside them, the bare ``policy.step`` (batch 1, one torch thread), timed in
a tight loop and paced at the camera rate (a sleep of one frame period
between steps, as in the node: after the wait the caches are cold and the
step is slower, on this 2-vCPU machine about 3x). Graph overhead = p50
latency - p50 paced step; its p99 = p99 latency - p50 paced step. The
targets, overhead <= 1 ms p50 and <= 2 ms p99 with no dropped frame, are
printed as PASS/FAIL per rate; the exit code does not depend on them.

Environment: ``ROS_AUTOMATIC_DISCOVERY_RANGE`` is set to ``LOCALHOST`` and,
unless already set, ``ROS_DOMAIN_ID`` to a random domain (1..101), for
this process and its children, so a run neither hears nor disturbs other
graphs. Children are stopped (SIGINT, then SIGKILL) on exit and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

WIDTH, HEIGHT = 128, 96
TARGET_P50_MS, TARGET_P99_MS = 1.0, 2.0
NS = "/node_latency"
IMAGE_TOPIC, CMD_TOPIC = f"{NS}/camera/image_raw", f"{NS}/cmd_vel"


def camera_main(rate: float, seconds: float, start_delay: float) -> None:
    """Child process: publish ``rate`` Hz frames for ``seconds`` after ``start_delay``, then exit."""
    import rclpy
    from sensor_msgs.msg import Image

    from lnn_nav.nodes.controller import SENSOR_QOS
    from lnn_nav.nodes.conversions import rgb_to_image_msg

    rclpy.init()
    node = rclpy.create_node("node_latency_camera")
    pub = node.create_publisher(Image, IMAGE_TOPIC, SENSOR_QOS)
    frame = np.random.default_rng(0).integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    deadline = time.monotonic() + 30.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(start_delay)
    period, sent = 1.0 / rate, 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        msg = rgb_to_image_msg(frame, node.get_clock().now().to_msg(), "camera")
        msg.header.stamp = node.get_clock().now().to_msg()  # as close to publish as we can get
        pub.publish(msg)
        sent += 1
        next_at = start + sent * period
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(f"SENT {sent}", flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


def relay_main() -> None:
    """Child process: the reference node, answering each frame with a TwistStamped carrying its stamp."""
    import rclpy
    from geometry_msgs.msg import TwistStamped
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    from lnn_nav.nodes.controller import SENSOR_QOS

    rclpy.init()
    node = rclpy.create_node("node_latency_relay")
    pub = node.create_publisher(TwistStamped, CMD_TOPIC, 10)

    def answer(msg: Image) -> None:
        out = TwistStamped()
        out.header = msg.header
        out.twist.linear.x = 1.0  # not a hover: the probe counts it as an answer
        pub.publish(out)

    node.create_subscription(Image, IMAGE_TOPIC, answer, SENSOR_QOS)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def build_native_relay(out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """``benchmarks/native_relay.c`` compiled against the ROS wheels in this environment: the command
    (without topics) and the environment it runs in. Raises RuntimeError saying what is missing
    (the link and run environment: :func:`lnn_nav.nodes.native.ros_link_environment`)."""
    from lnn_nav.nodes.native import RCL_LIBS, link_flags, ros_link_environment

    compiler = shutil.which(os.environ.get("CC", "cc"))
    if compiler is None:
        raise RuntimeError(f"no C compiler ('{os.environ.get('CC', 'cc')}' is not on PATH)")
    link = ros_link_environment()
    binary = out_dir / "native_relay"
    source = Path(__file__).with_name("native_relay.c")
    cmd = [
        compiler,
        "-O2",
        "-o",
        str(binary),
        str(source),
        *(f"-I{p}" for p in link.includes),
        *link_flags(link, RCL_LIBS),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building {source.name} failed:\n{done.stderr[-2000:]}")
    return [str(binary)], link.env


def native_controller_command(rate: float, policy: object, out_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The native controller node (lnn_nav/nodes/csrc/native_controller.cpp) on ``policy``'s exported weights,
    with the Python controller's settings in this benchmark."""
    from lnn_nav.kernels.native import export_weights, save_weights
    from lnn_nav.nodes import native

    binary, env = native.build()
    weights = save_weights(export_weights(policy), out_dir / "policy.native.safetensors")
    cmd = [
        str(binary),
        "--weights",
        str(weights),
        "--image-topic",
        IMAGE_TOPIC,
        "--cmd-topic",
        CMD_TOPIC,
        "--image-timeout",
        "10.0",
        "--failsafe-rate",
        "1.0",
        "--expected-rate",
        str(rate),
    ]
    return cmd, env


def step_times_ms(iters: int = 300, pace_s: float = 0.0) -> np.ndarray:
    """Bare ``policy.step`` wall time (ms), batch 1, one torch thread, default policy at 96x128;
    ``pace_s`` > 0 sleeps that long between steps (a camera's frame period)."""
    import torch

    from lnn_nav.models import LiquidPolicy

    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = LiquidPolicy().eval()
    image = torch.randint(0, 256, (1, 3, HEIGHT, WIDTH), dtype=torch.uint8)
    state, out = None, []
    with torch.inference_mode():
        for i in range(iters + 20):
            started = time.perf_counter()
            _, state = policy.step(image, 1.0 / 30.0, state)
            if i >= 20:
                out.append((time.perf_counter() - started) * 1e3)
            if pace_s > 0:
                time.sleep(pace_s)
    return np.asarray(out)


class Children:
    """Child processes that are always stopped on exit: SIGINT, then SIGKILL after a grace period."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, cmd: list[str], **kwargs) -> subprocess.Popen:
        proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.procs.append(proc)
        return proc

    def stop(self, grace: float = 5.0) -> None:
        for proc in reversed(self.procs):
            for sig in (signal.SIGINT, signal.SIGKILL):
                if proc.poll() is not None:
                    break
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
        self.procs = []


def controller_command(rate: float, model: Path, executor: str, raw_io: bool = True) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lnn_nav.nodes.controller",
        "--ros-args",
        "-p",
        f"model_path:={model}",
        "-p",
        "torch_threads:=1",
        "-p",
        f"executor:={executor}",
        "-p",
        f"raw_io:={'true' if raw_io else 'false'}",
        "-p",
        f"expected_rate:={rate}",
        "-p",
        f"image_topic:={IMAGE_TOPIC}",
        "-p",
        "image_timeout:=10.0",
        "-p",
        "failsafe_rate_hz:=1.0",
        "-r",
        f"/cmd_vel:={CMD_TOPIC}",
    ]


def measure_rate(
    rate: float, seconds: float, node_cmd: list[str], children: Children, env: dict[str, str] | None = None
) -> dict[str, float]:
    """One run of the node ``node_cmd`` starts and the camera at ``rate`` Hz; latencies of the commands
    received here."""
    import rclpy
    from geometry_msgs.msg import TwistStamped

    from lnn_nav.nodes.runtime import make_executor

    latencies: list[float] = []
    frames_from_ns = [float("inf")]  # commands stamped earlier are fail-safe hovers, not frame answers
    context = rclpy.context.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("node_latency_probe", context=context)
    clock = node.get_clock()

    def on_cmd(msg: TwistStamped) -> None:
        now = clock.now().nanoseconds
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        twist = msg.twist
        hover = (twist.linear.x, twist.linear.y, twist.linear.z, twist.angular.z) == (0.0, 0.0, 0.0, 0.0)
        # Fail-safe hovers (before the first frame) are exact zeros; the policy's answers are not.
        if stamp >= frames_from_ns[0] and not hover:
            latencies.append((now - stamp) / 1e6)

    node.create_subscription(TwistStamped, CMD_TOPIC, on_cmd, 1000)
    # The probe's own dispatch is in both the reference's and the controller's figure; the events
    # executor keeps it small.
    executor, _ = make_executor("events", context=context)
    executor.add_node(node)
    controller = children.start(node_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60.0
        while node.count_publishers(CMD_TOPIC) == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if controller.poll() is not None:
                raise RuntimeError(f"{' '.join(node_cmd[:3])} exited with code {controller.returncode} before starting")
        frames_from_ns[0] = clock.now().nanoseconds
        camera = children.start(
            [sys.executable, __file__, "--camera", str(rate), "--seconds", str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        while camera.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        sent = int(camera.stdout.read().split()[-1])
        drain = time.monotonic() + 1.0
        while time.monotonic() < drain:
            executor.spin_once(timeout_sec=0.05)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        children.stop()
    frame_latencies = np.asarray(latencies)
    received = len(frame_latencies)
    return {
        "sent": sent,
        "received": received,
        "dropped": max(0, sent - received),
        "p50": float(np.percentile(frame_latencies, 50)) if received else float("nan"),
        "p99": float(np.percentile(frame_latencies, 99)) if received else float("nan"),
    }


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="frames per rate and node for this long (20)")
    parser.add_argument("--rates", type=float, nargs="+", default=[30.0, 60.0], help="camera rates in Hz")
    parser.add_argument(
        "--executor",
        choices=["events", "single_threaded"],
        default="events",
        help="the controller's executor parameter (default events, as config/controller.yaml)",
    )
    parser.add_argument(
        "--native", action="store_true", help="also time the trivial node in C on rcl (benchmarks/native_relay.c)"
    )
    parser.add_argument(
        "--native-controller",
        action="store_true",
        help="also time the native controller node (rcl + the torch-free runtime) on the same policy",
    )
    parser.add_argument(
        "--messages",
        action="store_true",
        help="also time the controller with raw_io:=false (rclpy messages in and out, the reference)",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    parser.add_argument("--camera", type=float, help=argparse.SUPPRESS)  # internal: run as the camera child
    parser.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)  # internal: the reference node
    args = parser.parse_args(argv)

    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
    if args.camera is not None:
        camera_main(args.camera, args.seconds, start_delay=0.5)
        return 0
    if args.relay:
        relay_main()
        return 0

    import torch

    from lnn_nav.models import LiquidPolicy, save_policy

    children = Children()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="lnn_nav_node_latency_") as tmp:
            torch.manual_seed(0)
            policy = LiquidPolicy().eval()
            model = save_policy(policy, Path(tmp) / "default.safetensors")
            native_controller = None
            if args.native_controller:
                try:
                    native_controller = native_controller_command(30.0, policy, Path(tmp))
                except (RuntimeError, OSError, ValueError) as err:
                    print(f"node_latency: no native controller row: {err}", file=sys.stderr)
                    args.native_controller = False
            native = build_native_relay(Path(tmp)) if args.native else None
            for rate in args.rates:
                relay = measure_rate(rate, args.seconds, [sys.executable, __file__, "--relay"], children)
                if native is not None:
                    cmd, env = native
                    native_run = measure_rate(rate, args.seconds, [*cmd, IMAGE_TOPIC, CMD_TOPIC], children, env)
                result = measure_rate(rate, args.seconds, controller_command(rate, model, args.executor), children)
                if native_controller is not None:
                    cmd, env = native_controller
                    cmd = [*cmd[:-1], str(rate)]  # --expected-rate
                    nc = measure_rate(rate, args.seconds, cmd, children, env)
                    result["nc_p50"], result["nc_p99"], result["nc_dropped"] = nc["p50"], nc["p99"], nc["dropped"]
                if args.messages:
                    cmd = controller_command(rate, model, args.executor, raw_io=False)
                    messages = measure_rate(rate, args.seconds, cmd, children)
                    result["messages_p50"], result["messages_p99"] = messages["p50"], messages["p99"]
                    result["messages_dropped"] = messages["dropped"]
                hot, paced = step_times_ms(), step_times_ms(pace_s=1.0 / rate)
                result["relay_p50"], result["relay_p99"] = relay["p50"], relay["p99"]
                if native is not None:
                    result["native_p50"], result["native_p99"] = native_run["p50"], native_run["p99"]
                    result["native_dropped"] = native_run["dropped"]
                result["step_hot"] = float(np.percentile(hot, 50))
                result["step_paced"] = float(np.percentile(paced, 50))
                result["overhead"] = result["p50"] - result["step_paced"]
                result["overhead_p99"] = result["p99"] - result["step_paced"]
                rows.append((rate, result))
                print(f"{rate:g} Hz: {result}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("node_latency: interrupted; child processes stopped", file=sys.stderr)
        return 130
    finally:
        children.stop()
        signal.signal(signal.SIGTERM, previous)

    header = (
        f"Camera -> /cmd_vel latency, {WIDTH}x{HEIGHT} rgb8, default policy, torch_threads 1, controller "
        f"executor {args.executor}, {args.seconds:g} s per rate and node, {os.cpu_count()} CPUs, "
        f"{platform.machine()}, ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}"
    )
    lines = [
        "| rate (Hz) | frames sent | commands | dropped | trivial node p50 / p99 (ms) | controller p50 / p99 (ms) "
        "| policy.step p50 hot / paced (ms) | overhead p50 / p99 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rate, r in rows:
        lines.append(
            f"| {rate:g} | {r['sent']} | {r['received']} | {r['dropped']} "
            f"| {r['relay_p50']:.2f} / {r['relay_p99']:.2f} "
            f"| {r['p50']:.2f} / {r['p99']:.2f} | {r['step_hot']:.2f} / {r['step_paced']:.2f} "
            f"| {r['overhead']:.2f} / {r['overhead_p99']:.2f} |"
        )
    if args.native:
        lines += [
            "",
            "| rate (Hz) | trivial rclpy node p50 / p99 (ms) | trivial C node on rcl p50 / p99 (ms) | C node dropped "
            "| rclpy − C, p50 (ms) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for rate, r in rows:
            lines.append(
                f"| {rate:g} | {r['relay_p50']:.2f} / {r['relay_p99']:.2f} | {r['native_p50']:.2f} / "
                f"{r['native_p99']:.2f} | {r['native_dropped']:.0f} | {r['relay_p50'] - r['native_p50']:.2f} |"
            )
    if args.messages:
        lines += [
            "",
            "| rate (Hz) | controller, rclpy messages (raw_io false) p50 / p99 (ms) | dropped "
            "| controller, CDR (raw_io true) p50 / p99 (ms) | messages − CDR, p50 (ms) |",
            "|---:|---:|---:|---:|---:|",
        ]
        for rate, r in rows:
            lines.append(
                f"| {rate:g} | {r['messages_p50']:.2f} / {r['messages_p99']:.2f} | {r['messages_dropped']:.0f} "
                f"| {r['p50']:.2f} / {r['p99']:.2f} | {r['messages_p50'] - r['p50']:.2f} |"
            )
    if args.native_controller:
        lines += [
            "",
            "| rate (Hz) | native controller node p50 / p99 (ms) | dropped | overhead p50 / p99 (ms) "
            "| Python controller p50 (ms) | Python − native, p50 (ms) |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for rate, r in rows:
            lines.append(
                f"| {rate:g} | {r['nc_p50']:.2f} / {r['nc_p99']:.2f} | {r['nc_dropped']:.0f} "
                f"| {r['nc_p50'] - r['step_paced']:.2f} / {r['nc_p99'] - r['step_paced']:.2f} "
                f"| {r['p50']:.2f} | {r['p50'] - r['nc_p50']:.2f} |"
            )
    table = "\n".join(lines)
    verdicts = []
    for rate, r in rows:
        if args.native_controller:
            native_overhead, native_p99 = r["nc_p50"] - r["step_paced"], r["nc_p99"] - r["step_paced"]
            ok = native_overhead <= TARGET_P50_MS and native_p99 <= TARGET_P99_MS and r["nc_dropped"] == 0
            verdicts.append(
                f"{'PASS' if ok else 'FAIL'} at {rate:g} Hz, native controller node: overhead <= {TARGET_P50_MS:g} ms "
                f"p50, <= {TARGET_P99_MS:g} ms p99, no drops (got {native_overhead:.2f} / {native_p99:.2f} ms, "
                f"{r['nc_dropped']:.0f} dropped)"
            )
        ok = r["overhead"] <= TARGET_P50_MS and r["overhead_p99"] <= TARGET_P99_MS and r["dropped"] == 0
        verdicts.append(
            f"{'PASS' if ok else 'FAIL'} at {rate:g} Hz: overhead <= {TARGET_P50_MS:g} ms p50, <= {TARGET_P99_MS:g} ms "
            f"p99, no drops (got {r['overhead']:.2f} / {r['overhead_p99']:.2f} ms, {r['dropped']} dropped; "
            f"the trivial node alone: {r['relay_p50']:.2f} ms p50)"
        )
    text = "\n\n".join([header, table, *verdicts])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
