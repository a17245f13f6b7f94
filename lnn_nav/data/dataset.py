"""rosbag2 recordings -> training sequences on disk (memory-mapped), and the reader for training.

Alignment is an as-of join on the camera: each frame (at its header stamp
``t``) takes the latest command, IMU sample and odometry at or before ``t``
and no older than ``max_age``; a frame without a fresh command is dropped
and counted. Nothing after ``t`` is ever used, so no label leaks from the
future. Stamped messages are placed by their header stamp, unstamped ones
(``geometry_msgs/Twist``) by their receive time in the bag.

A frame's Δt is the time since the previous kept frame of the same bag; a
gap longer than ``max_gap`` (dropped stream) starts a new sequence, as the
controller node resets its state after such a gap.

Layout of a dataset folder::

    meta.json      format version, image size, frame/sequence counts, sources, what was dropped
    images.u8      uint8 [N, 3, H, W], C order (np.memmap)
    frames.npz     command [N, 4], goal [N, 4], imu [N, 6], dt [N], sequence [N] (float32 / int32)
    sequences.npz  start [S], length [S], bag [S] (index into meta["bags"])
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from lnn_nav.data.bags import BagReader, open_bag
from lnn_nav.data.cdr import Stamped, read_image, read_stamped
from lnn_nav.data.errors import BagError, CorruptBagError, MissingTopicError
from lnn_nav.data.images import ImageConversionError, compressed_image_to_rgb, image_msg_to_rgb

FORMAT_VERSION = 1
_NS = 1_000_000_000

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
COMMAND_TYPES = ("geometry_msgs/msg/TwistStamped", "geometry_msgs/msg/Twist")


class DatasetError(ValueError):
    """A dataset cannot be built or read (with what is wrong and where)."""


@dataclass
class DatasetConfig:
    height: int = 48
    width: int = 64
    image_topic: str = "/camera/image_raw"
    command_topic: str = "/cmd_vel"
    imu_topic: str = "/imu/data"
    odom_topic: str = "/odom"
    goal_topic: str = "/goal_pose"
    max_age: float = 0.1  # s: oldest command/IMU/odometry a frame may take
    max_gap: float = 0.5  # s: a longer gap between frames starts a new sequence
    min_sequence: int = 8  # frames; shorter pieces are dropped


@dataclass
class BagStats:
    bag: str
    frames_in: int = 0
    frames_kept: int = 0
    dropped: Dict[str, int] = field(default_factory=dict)
    sequences: int = 0

    def drop(self, why: str, n: int = 1) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + n


def _stamp_ns(msg: Any) -> int:
    if hasattr(msg, "stamp_ns"):  # a fast-path RawImage
        return int(msg.stamp_ns)
    return int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)


class _AsOf:
    """Time-sorted samples; ``at(t)``: latest at or before ``t`` and no older than ``max_age`` (or None)."""

    def __init__(self, max_age_ns: Optional[int]) -> None:
        self.max_age_ns = max_age_ns
        self.times: List[int] = []
        self.values: List[Any] = []

    def add(self, t: int, value: Any) -> None:
        if self.times and t < self.times[-1]:
            k = bisect.bisect_right(self.times, t)
            self.times.insert(k, t)
            self.values.insert(k, value)
        else:
            self.times.append(t)
            self.values.append(value)

    def at(self, t: int) -> Optional[Any]:
        k = bisect.bisect_right(self.times, t) - 1
        if k < 0:
            return None
        if self.max_age_ns is not None and t - self.times[k] > self.max_age_ns:
            return None
        return self.values[k]


def _quat_rotate_inverse(q_wxyz: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate world vector ``v`` into the body frame of orientation ``q`` (body -> world)."""
    w, x, y, z = q_wxyz
    r = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    return r.T @ v


def _command_values(msgtype: str, v: np.ndarray) -> np.ndarray:
    """``[vx, vy, vz, yaw_rate]`` from a twist's ``linear xyz, angular xyz``."""
    return np.array([v[0], v[1], v[2], v[5]], dtype=np.float32)


def _deserialize(reader: BagReader, raw: bytes, msgtype: str, topic: str, t_recv: int) -> Any:
    try:
        return reader.typestore.deserialize_cdr(raw, msgtype)
    except Exception as err:  # noqa: BLE001 - say which message, whatever failed
        raise CorruptBagError(f"{reader.path}: the {msgtype} message on {topic} at {t_recv} ns cannot be "
                              f"deserialised ({len(raw)} bytes): {err}") from err  # fmt: skip


def _vec(*parts: Any) -> List[float]:
    return [float(getattr(p, axis)) for p in parts for axis in ("x", "y", "z")]


def _stamped_slow(msg: Any, msgtype: str) -> Stamped:
    """The :func:`~lnn_nav.data.cdr.read_stamped` layout from a deserialised message (any endianness, Twist too)."""
    if msgtype == "geometry_msgs/msg/Twist":
        return Stamped(0, "", np.array(_vec(msg.linear, msg.angular)))
    stamp, frame = _stamp_ns(msg), msg.header.frame_id
    if msgtype == "geometry_msgs/msg/TwistStamped":
        values = _vec(msg.twist.linear, msg.twist.angular)
    elif msgtype == "sensor_msgs/msg/Imu":
        o = msg.orientation
        values = [o.x, o.y, o.z, o.w, *msg.orientation_covariance, *_vec(msg.angular_velocity),
                  *msg.angular_velocity_covariance, *_vec(msg.linear_acceleration),
                  *msg.linear_acceleration_covariance]  # fmt: skip
    elif msgtype == "nav_msgs/msg/Odometry":
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        values = [*_vec(p), o.x, o.y, o.z, o.w, *msg.pose.covariance,
                  *_vec(msg.twist.twist.linear, msg.twist.twist.angular), *msg.twist.covariance]  # fmt: skip
    elif msgtype == "geometry_msgs/msg/PoseStamped":
        p, o = msg.pose.position, msg.pose.orientation
        values = [*_vec(p), o.x, o.y, o.z, o.w]
    else:
        raise DatasetError(f"message type {msgtype} is not supported on this topic")
    return Stamped(stamp, frame, np.asarray(values, dtype=np.float64))


def _check_topics(reader: BagReader, config: DatasetConfig) -> Dict[str, str]:
    topics = reader.topics()
    found = {t: info.msgtype for t, info in topics.items()}
    listing = ", ".join(f"{t} ({m})" for t, m in found.items()) or "none"
    image_topic = config.image_topic
    if image_topic not in found and f"{image_topic}/compressed" in found:
        image_topic = f"{image_topic}/compressed"
    for name, topic, types in (("camera", image_topic, IMAGE_TYPES), ("command", config.command_topic, COMMAND_TYPES)):
        if topic not in found:
            raise MissingTopicError(f"{reader.path}: no {name} topic {topic}; the bag has: {listing}", [topic],
                                    {t: (i.msgtype, i.count) for t, i in topics.items()})  # fmt: skip
        if found[topic] not in types:
            raise DatasetError(f"{reader.path}: {name} topic {topic} has type {found[topic]}; "
                               f"expected one of {', '.join(types)}")  # fmt: skip
        if topics[topic].count == 0:
            raise DatasetError(f"{reader.path}: {name} topic {topic} has no messages")
    return {"image": image_topic, **{k: v for k, v in found.items()}}


class _Writer:
    """Appends frames to a dataset folder as they come (no need to know N in advance)."""

    def __init__(self, out: Path, config: DatasetConfig) -> None:
        out.mkdir(parents=True, exist_ok=True)
        for name in ("meta.json", "images.u8", "frames.npz", "sequences.npz"):
            if (out / name).exists():
                raise FileExistsError(f"{out / name} exists; a dataset is never written over: choose a new --out")
        self.out = out
        self.config = config
        self.images = open(out / "images.u8.partial", "wb")
        self.columns: Dict[str, List[np.ndarray]] = {"command": [], "goal": [], "imu": [], "dt": [], "sequence": []}
        self.seq_start: List[int] = []
        self.seq_len: List[int] = []
        self.seq_bag: List[int] = []
        self.n = 0

    def add_sequence(self, bag_index: int, frames: Dict[str, np.ndarray]) -> None:
        count = len(frames["dt"])
        self.images.write(np.ascontiguousarray(frames["image"]).tobytes())
        for key in ("command", "goal", "imu", "dt"):
            self.columns[key].append(frames[key])
        self.columns["sequence"].append(np.full(count, len(self.seq_start), dtype=np.int32))
        self.seq_start.append(self.n)
        self.seq_len.append(count)
        self.seq_bag.append(bag_index)
        self.n += count

    def finish(self, meta: Dict[str, Any]) -> None:
        self.images.close()
        cat = {k: (np.concatenate(v) if v else np.zeros((0,), np.float32)) for k, v in self.columns.items()}
        np.savez(self.out / "frames.npz", command=cat["command"].reshape(-1, 4).astype(np.float32),
                 goal=cat["goal"].reshape(-1, 4).astype(np.float32), imu=cat["imu"].reshape(-1, 6).astype(np.float32),
                 dt=cat["dt"].astype(np.float32), sequence=cat["sequence"].astype(np.int32))  # fmt: skip
        np.savez(self.out / "sequences.npz", start=np.array(self.seq_start, np.int64),
                 length=np.array(self.seq_len, np.int64), bag=np.array(self.seq_bag, np.int32))  # fmt: skip
        (self.out / "images.u8.partial").rename(self.out / "images.u8")
        (self.out / "meta.json").write_text(json.dumps(meta, indent=1))

    def abort(self) -> None:
        self.images.close()
        (self.out / "images.u8.partial").unlink(missing_ok=True)


def _frames_of_bag(reader: BagReader, config: DatasetConfig, stats: BagStats) -> List[Dict[str, np.ndarray]]:
    from lnn_nav.preprocess import goal_features, resize_rgb

    topics = _check_topics(reader, config)
    image_topic = topics["image"]
    wanted = [image_topic, config.command_topic]
    optional = [t for t in (config.imu_topic, config.odom_topic, config.goal_topic) if t in topics]
    max_age = int(config.max_age * _NS)
    commands, imus, odoms, goals = _AsOf(max_age), _AsOf(max_age), _AsOf(max_age), _AsOf(None)
    stamped_cmd = topics[config.command_topic].endswith("TwistStamped")
    images: List[Tuple[int, np.ndarray]] = []
    for topic, msgtype, t_recv, raw in reader.raw_messages(wanted + optional):
        if topic == image_topic:
            stats.frames_in += 1
            msg = read_image(raw) if msgtype.endswith("/Image") else None
            if msg is None:
                msg = _deserialize(reader, raw, msgtype, topic, t_recv)
            try:
                rgb = image_msg_to_rgb(msg) if msgtype.endswith("/Image") else compressed_image_to_rgb(msg)
            except ImageConversionError as err:
                stats.drop(f"undecodable image ({err})")
                continue
            images.append((_stamp_ns(msg), resize_rgb(rgb, config.height, config.width)))
            continue
        fast = read_stamped(raw, msgtype)
        if fast is None:
            fast = _stamped_slow(_deserialize(reader, raw, msgtype, topic, t_recv), msgtype)
        stamp, frame_id, v = fast
        if topic == config.command_topic:
            cmd = _command_values(msgtype, v)
            if np.isfinite(cmd).all():
                commands.add(stamp if stamped_cmd else t_recv, cmd)
            else:
                stats.drop("non-finite command")
        elif topic == config.imu_topic:
            imus.add(stamp, np.concatenate([v[25:28], v[13:16]]).astype(np.float32))
        elif topic == config.odom_topic:
            odoms.add(stamp, (frame_id, v[0:3].copy(), np.array([v[6], v[3], v[4], v[5]])))
        elif topic == config.goal_topic:
            goals.add(stamp, (frame_id, v[0:3].copy()))
    images.sort(key=lambda item: item[0])
    sequences: List[Dict[str, np.ndarray]] = []
    current: Dict[str, List[Any]] = {}
    last_t: Optional[int] = None
    intervals = np.diff([t for t, _ in images]) if len(images) > 1 else np.array([])
    nominal = float(np.median(intervals[intervals > 0])) / _NS if np.any(intervals > 0) else 1.0 / 15.0

    def close() -> None:
        if current and len(current["dt"]) >= config.min_sequence:
            sequences.append({k: np.stack(v) for k, v in current.items()})
        elif current:
            stats.drop("sequence shorter than min_sequence", len(current["dt"]))
        current.clear()

    for t, frame in images:
        cmd = commands.at(t)
        if cmd is None:
            stats.drop("no command within max_age")
            continue
        imu = imus.at(t)
        goal_vec = np.zeros(4, np.float32)
        odom, goal = odoms.at(t), goals.at(t)
        if odom is not None and goal is not None:
            if odom[0] and goal[0] and odom[0] != goal[0]:
                raise DatasetError(f"{reader.path}: goal frame {goal[0]!r} differs from odometry frame {odom[0]!r}")
            goal_vec = goal_features(_quat_rotate_inverse(odom[2], goal[1] - odom[1]))
        elif topics.get(config.goal_topic) is not None:
            stats.drop("no odometry/goal within max_age")
            continue
        if last_t is not None and t - last_t > config.max_gap * _NS:
            close()
            last_t = None
        dt = nominal if last_t is None else (t - last_t) / _NS
        if dt <= 0:
            stats.drop("repeated frame stamp")
            continue
        last_t = t
        if not current:
            current.update(image=[], command=[], goal=[], imu=[], dt=[])
        current["image"].append(frame.transpose(2, 0, 1))
        current["command"].append(cmd)
        current["goal"].append(goal_vec)
        current["imu"].append(imu if imu is not None else np.zeros(6, np.float32))
        current["dt"].append(np.float32(dt))
    close()
    stats.frames_kept = sum(len(s["dt"]) for s in sequences)
    stats.sequences = len(sequences)
    return sequences


def find_bags(paths: Iterable[str | Path]) -> List[Path]:
    """Bags named directly, or every rosbag2 directory (holding ``metadata.yaml``) or lone .mcap/.db3 below a folder."""
    found: List[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise DatasetError(f"{p}: no such bag or folder")
        if p.is_file() or (p / "metadata.yaml").is_file():
            found.append(p)
            continue
        subs = sorted(q for q in p.iterdir() if q.is_dir() and (q / "metadata.yaml").is_file())
        files = sorted(q for q in p.iterdir() if q.suffix in (".mcap", ".db3"))
        if not subs and not files:
            raise DatasetError(f"{p}: no rosbag2 recordings in this folder")
        found += subs + files
    return found


def _convert_bag(
    bag: Path, config: DatasetConfig
) -> Tuple[BagStats, List[Dict[str, np.ndarray]], int, Optional[Tuple[str, str]]]:
    """One bag -> (stats, sequences, bytes read, error or None); errors as (class name, message) so
    they cross process boundaries (bag errors with extra fields do not pickle)."""
    stats = BagStats(str(bag))
    try:
        with open_bag(bag) as reader:
            sequences = _frames_of_bag(reader, config, stats)
            for note in reader.notes:
                stats.drop(note, 0)
        return stats, sequences, _bag_bytes(Path(bag)), None
    except (BagError, DatasetError) as err:
        return stats, [], 0, (type(err).__name__, str(err))


def build_dataset(
    bags: Sequence[Path],
    out: Path,
    config: DatasetConfig,
    progress: Optional[Any] = None,
    skip_bad: bool = False,
    workers: int = 1,
) -> Dict[str, Any]:
    """Convert ``bags`` into a dataset folder ``out``; returns the metadata written to meta.json.

    ``workers`` > 1 decodes bags in that many processes (bags are independent;
    frames are still written in bag order, so the result does not depend on it).
    """
    writer = _Writer(out, config)
    all_stats: List[BagStats] = []
    skipped: Dict[str, str] = {}
    started = time.perf_counter()
    read_bytes = 0
    pool = None
    try:
        if workers > 1 and len(bags) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
            results: Iterable[Any] = pool.map(_convert_bag, bags, [config] * len(bags), chunksize=1)
        else:
            results = (_convert_bag(bag, config) for bag in bags)
        for index, (bag, (stats, sequences, nbytes, error)) in enumerate(zip(bags, results)):
            if error is not None:
                if not skip_bad:
                    raise _rebuild_error(error)
                skipped[str(bag)] = error[1]
            for seq in sequences:
                writer.add_sequence(index, seq)
            read_bytes += nbytes
            all_stats.append(stats)
            if progress is not None:
                progress(stats)
        elapsed = time.perf_counter() - started
        meta = {
            "format": FORMAT_VERSION, "config": asdict(config), "frames": writer.n,
            "sequences": len(writer.seq_start), "bags": [str(b) for b in bags],
            "stats": [asdict(s) for s in all_stats], "skipped": skipped,
            "seconds": elapsed, "bytes_read": read_bytes, "workers": workers,
        }  # fmt: skip
        writer.finish(meta)
        return meta
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _rebuild_error(error: Tuple[str, str]) -> Exception:
    """The exception a worker reported as ``(class name, message)``."""
    from lnn_nav.data import errors

    name, message = error
    if name == "MissingTopicError":
        return MissingTopicError(message, [], {})
    if name == "DatasetError":
        return DatasetError(message)
    cls = getattr(errors, name, BagError)
    return cls(message) if isinstance(cls, type) and issubclass(cls, BagError) else BagError(message)


def _bag_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in (".mcap", ".db3"))


class SequenceDataset:
    """A dataset folder opened for training: memory-mapped images, small arrays in RAM.

    ``windows(length)`` cuts every sequence into consecutive windows for
    truncated BPTT (the recurrent state carries from one window to the next
    of the same sequence when the trainer keeps it).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise DatasetError(f"{self.path}: not a dataset folder (no meta.json); build one with `lnn-nav dataset`")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format") != FORMAT_VERSION:
            raise DatasetError(f"{self.path}: dataset format {self.meta.get('format')} is not {FORMAT_VERSION}")
        cfg = self.meta["config"]
        self.height, self.width = int(cfg["height"]), int(cfg["width"])
        n = int(self.meta["frames"])
        expected = n * 3 * self.height * self.width
        size = (self.path / "images.u8").stat().st_size
        if size != expected:
            raise DatasetError(f"{self.path}/images.u8 has {size} bytes; expected {expected} for {n} frames "
                               f"of 3x{self.height}x{self.width} (truncated copy?)")  # fmt: skip
        self.images = np.memmap(self.path / "images.u8", np.uint8, "r", shape=(n, 3, self.height, self.width)) if n else np.zeros((0, 3, self.height, self.width), np.uint8)
        with np.load(self.path / "frames.npz") as f:
            self.command, self.goal, self.imu, self.dt = f["command"], f["goal"], f["imu"], f["dt"]
        with np.load(self.path / "sequences.npz") as s:
            self.seq_start, self.seq_length, self.seq_bag = s["start"], s["length"], s["bag"]

    def __len__(self) -> int:
        return len(self.dt)

    @property
    def num_sequences(self) -> int:
        return len(self.seq_start)
