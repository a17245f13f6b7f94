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

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from lnn_nav.data.bags import BagReader, open_bag
from lnn_nav.data.cdr import Stamped, read_image, read_stamped, read_stamped_many
from lnn_nav.data.errors import BagError, CorruptBagError, MissingTopicError
from lnn_nav.data.images import ImageConversionError, compressed_image_to_rgb, image_msg_to_rgb
from lnn_nav.geometry import quat_to_matrix

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
    camera_info_topic: str = "/camera/camera_info"  # optional: the camera's field of view, for the checkpoint
    max_age: float = 0.1  # s: oldest command/IMU/odometry a frame may take
    max_gap: float = 0.5  # s: a longer gap between frames starts a new sequence
    min_sequence: int = 8  # frames; shorter pieces are dropped


@dataclass
class BagStats:
    bag: str
    frames_in: int = 0
    frames_kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    sequences: int = 0
    camera_hfov_deg: float | None = None  # from the bag's CameraInfo K, when it has one

    def drop(self, why: str, n: int = 1) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + n


def _stamp_ns(msg: Any) -> int:
    if hasattr(msg, "stamp_ns"):  # a fast-path RawImage
        return int(msg.stamp_ns)
    return int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)


class _Stream:
    """One topic's samples (:meth:`load`); :meth:`as_of` joins them to frame times (latest at or before,
    no older than ``max_age_ns``), all frames at once."""

    def __init__(self, max_age_ns: int | None) -> None:
        self.max_age_ns = max_age_ns
        self.times: list[int] = []
        self.frame_ids: list[str] = []
        self.values = np.zeros((0, 0))

    def load(self, times: Sequence[int], frame_ids: list[str], values: np.ndarray) -> None:
        self.times, self.frame_ids, self.values = list(times), frame_ids, values

    def as_of(self, frame_times: np.ndarray) -> np.ndarray:
        """Per frame, the row of :attr:`values` of its sample, -1 where none is fresh enough."""
        if not self.times:
            return np.full(len(frame_times), -1, dtype=np.int64)
        times = np.asarray(self.times, dtype=np.int64)
        order = np.argsort(times, kind="stable")  # equal stamps: the one that came last wins
        k = np.searchsorted(times[order], frame_times, side="right") - 1
        found = k >= 0
        index = np.where(found, order[np.maximum(k, 0)], -1)
        if self.max_age_ns is not None:
            stale = found & (frame_times - times[np.maximum(index, 0)] > self.max_age_ns)
            index[stale] = -1
        return index


def _parse_topic(
    reader: BagReader, topic: str, msgtype: str, t_recv: list[int], raws: list[bytes]
) -> tuple[list[int], list[str], np.ndarray]:
    """A topic's messages -> (header stamps, frame ids, float64 payloads ``[N, K]``) in the
    :func:`~lnn_nav.data.cdr.read_stamped` layout: all at once when they share a layout, else one by one."""
    many = read_stamped_many(raws, msgtype)
    if many is not None:
        stamp_array, frame_id, values = many
        return stamp_array.tolist(), [frame_id] * len(raws), values
    stamps: list[int] = []
    frame_ids: list[str] = []
    rows: list[np.ndarray] = []
    for t, raw in zip(t_recv, raws):
        fast = read_stamped(raw, msgtype)
        if fast is None:
            fast = _stamped_slow(_deserialize(reader, raw, msgtype, topic, t), msgtype)
        stamps.append(fast.stamp_ns)
        frame_ids.append(fast.frame_id)
        rows.append(fast.values)
    return stamps, frame_ids, np.stack(rows)


def _quat_rotate_inverse(q_wxyz: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate world vectors ``v`` ``[N, 3]`` into the body frames of orientations ``q`` ``[N, 4]`` (body -> world)."""
    return np.einsum("nji,nj->ni", quat_to_matrix(q_wxyz, normalise=False), v)


def _count(stats: BagStats, why: str, n: int) -> None:
    """Count ``n`` dropped frames, if any (a zero ``drop`` records a note: a reader's recovery message)."""
    if n:
        stats.drop(why, n)


def _deserialize(reader: BagReader, raw: bytes, msgtype: str, topic: str, t_recv: int) -> Any:
    try:
        return reader.typestore.deserialize_cdr(raw, msgtype)
    except Exception as err:  # noqa: BLE001 - say which message, whatever failed
        raise CorruptBagError(
            f"{reader.path}: the {msgtype} message on {topic} at {t_recv} ns cannot be "
            f"deserialised ({len(raw)} bytes): {err}"
        ) from err


def _vec(*parts: Any) -> list[float]:
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
        values = [
            o.x,
            o.y,
            o.z,
            o.w,
            *msg.orientation_covariance,
            *_vec(msg.angular_velocity),
            *msg.angular_velocity_covariance,
            *_vec(msg.linear_acceleration),
            *msg.linear_acceleration_covariance,
        ]
    elif msgtype == "nav_msgs/msg/Odometry":
        p, o = msg.pose.pose.position, msg.pose.pose.orientation
        values = [
            *_vec(p),
            o.x,
            o.y,
            o.z,
            o.w,
            *msg.pose.covariance,
            *_vec(msg.twist.twist.linear, msg.twist.twist.angular),
            *msg.twist.covariance,
        ]
    elif msgtype == "geometry_msgs/msg/PoseStamped":
        p, o = msg.pose.position, msg.pose.orientation
        values = [*_vec(p), o.x, o.y, o.z, o.w]
    else:
        raise DatasetError(f"message type {msgtype} is not supported on this topic")
    return Stamped(stamp, frame, np.asarray(values, dtype=np.float64))


def _check_topics(reader: BagReader, config: DatasetConfig) -> dict[str, str]:
    topics = reader.topics()
    found = {t: info.msgtype for t, info in topics.items()}
    listing = ", ".join(f"{t} ({m})" for t, m in found.items()) or "none"
    image_topic = config.image_topic
    if image_topic not in found and f"{image_topic}/compressed" in found:
        image_topic = f"{image_topic}/compressed"
    for name, topic, types in (("camera", image_topic, IMAGE_TYPES), ("command", config.command_topic, COMMAND_TYPES)):
        if topic not in found:
            raise MissingTopicError(
                f"{reader.path}: no {name} topic {topic}; the bag has: {listing}",
                [topic],
                {t: (i.msgtype, i.count) for t, i in topics.items()},
            )
        if found[topic] not in types:
            raise DatasetError(
                f"{reader.path}: {name} topic {topic} has type {found[topic]}; expected one of {', '.join(types)}"
            )
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
        self.columns: dict[str, list[np.ndarray]] = {"command": [], "goal": [], "imu": [], "dt": [], "sequence": []}
        self.seq_start: list[int] = []
        self.seq_len: list[int] = []
        self.seq_bag: list[int] = []
        self.n = 0

    def add_sequence(self, bag_index: int, frames: dict[str, np.ndarray]) -> None:
        count = len(frames["dt"])
        # ndarray.data is memoryview(array); spelled so because numpy declares the buffer protocol
        # (__buffer__) only for Python >= 3.12, which mypy's 3.10 target does not see.
        self.images.write(np.ascontiguousarray(frames["image"]).data.cast("B"))  # no bytes copy
        for key in ("command", "goal", "imu", "dt"):
            self.columns[key].append(frames[key])
        self.columns["sequence"].append(np.full(count, len(self.seq_start), dtype=np.int32))
        self.seq_start.append(self.n)
        self.seq_len.append(count)
        self.seq_bag.append(bag_index)
        self.n += count

    def finish(self, meta: dict[str, Any]) -> None:
        self.images.close()
        cat = {k: (np.concatenate(v) if v else np.zeros((0,), np.float32)) for k, v in self.columns.items()}
        np.savez(
            self.out / "frames.npz",
            command=cat["command"].reshape(-1, 4).astype(np.float32),
            goal=cat["goal"].reshape(-1, 4).astype(np.float32),
            imu=cat["imu"].reshape(-1, 6).astype(np.float32),
            dt=cat["dt"].astype(np.float32),
            sequence=cat["sequence"].astype(np.int32),
        )
        np.savez(
            self.out / "sequences.npz",
            start=np.array(self.seq_start, np.int64),
            length=np.array(self.seq_len, np.int64),
            bag=np.array(self.seq_bag, np.int32),
        )
        (self.out / "images.u8.partial").rename(self.out / "images.u8")
        (self.out / "meta.json").write_text(json.dumps(meta, indent=1))

    def abort(self) -> None:
        self.images.close()
        (self.out / "images.u8.partial").unlink(missing_ok=True)


def _frames_of_bag(reader: BagReader, config: DatasetConfig, stats: BagStats) -> list[dict[str, np.ndarray]]:
    """A bag's frames, joined and cut into sequences.

    Messages are read one by one (the bytes must be parsed anyway); the
    as-of join, goal geometry and sequence cuts then run on whole arrays:
    per-frame Python here cost more than reading the bag.
    """
    from lnn_nav.models.preprocess import goal_features, resize_rgb

    topics = _check_topics(reader, config)
    image_topic = topics["image"]
    wanted = [image_topic, config.command_topic]
    optional = [t for t in (config.imu_topic, config.odom_topic, config.goal_topic) if t in topics]
    info_topic = config.camera_info_topic
    if topics.get(info_topic) == "sensor_msgs/msg/CameraInfo":
        stats.camera_hfov_deg = _camera_hfov(reader, info_topic)
    max_age = int(config.max_age * _NS)
    stamped_cmd = topics[config.command_topic].endswith("TwistStamped")
    image_times: list[int] = []
    images: list[np.ndarray] = []
    # Other topics: their bytes now, parsed per topic after the loop (one array view when a topic's
    # messages share a layout, as one publisher's do).
    raw_of: dict[str, tuple[str, list[int], list[bytes]]] = {}
    for topic, msgtype, t_recv, raw in reader.raw_messages(wanted + optional):
        if topic == image_topic:
            stats.frames_in += 1
            msg = read_image(raw) if msgtype.endswith("/Image") else None
            if msg is None:
                msg = _deserialize(reader, raw, msgtype, topic, t_recv)
            try:
                rgb = image_msg_to_rgb(msg, copy=False) if msgtype.endswith("/Image") else compressed_image_to_rgb(msg)
            except ImageConversionError as err:
                stats.drop(f"undecodable image ({err})")
                continue
            image_times.append(_stamp_ns(msg))
            images.append(resize_rgb(rgb, config.height, config.width))
            continue
        entry = raw_of.setdefault(topic, (msgtype, [], []))
        entry[1].append(t_recv)
        entry[2].append(raw)

    def stream(topic: str, fields: list[int], max_age_ns: int | None, receive_time: bool = False) -> _Stream:
        out = _Stream(max_age_ns)
        if topic in raw_of:
            msgtype, t_recv, raws = raw_of[topic]
            stamps, frame_ids, values = _parse_topic(reader, topic, msgtype, t_recv, raws)
            out.load(t_recv if receive_time else stamps, frame_ids, values[:, fields])
        else:
            out.values = np.zeros((0, len(fields)))
        return out

    commands = stream(config.command_topic, [0, 1, 2, 5], max_age, receive_time=not stamped_cmd)  # linear, yaw rate
    imus = stream(config.imu_topic, [25, 26, 27, 13, 14, 15], max_age)  # linear acceleration, angular velocity
    odoms = stream(config.odom_topic, [0, 1, 2, 6, 3, 4, 5], max_age)  # position, quaternion w x y z
    goals = stream(config.goal_topic, [0, 1, 2], None)
    odom_frames, goal_frames = odoms.frame_ids, goals.frame_ids
    # A non-finite command is dropped on arrival: frames take the last good one before it.
    # all(axis=1) of a 2-D array is a 1-D array; numpy's stubs cannot tell it from the 0-D (np.bool) case.
    finite = cast(np.ndarray, np.isfinite(commands.values.astype(np.float32)).all(axis=1))
    if not finite.all():
        stats.drop("non-finite command", int((~finite).sum()))
        commands.times = [t for t, ok in zip(commands.times, finite) if ok]
        commands.values = commands.values[finite]
    order = np.argsort(np.asarray(image_times, dtype=np.int64), kind="stable")
    times = np.asarray(image_times, dtype=np.int64)[order]
    intervals = np.diff(times)
    nominal = float(np.median(intervals[intervals > 0])) / _NS if np.any(intervals > 0) else 1.0 / 15.0

    cmd_i = commands.as_of(times)
    keep = cmd_i >= 0
    _count(stats, "no command within max_age", int((~keep).sum()))
    goal_vec = np.zeros((len(times), 4), np.float32)
    odom_i, goal_i = odoms.as_of(times), goals.as_of(times)
    both = keep & (odom_i >= 0) & (goal_i >= 0)
    if both.any():
        o, g = odom_i[both], goal_i[both]
        odom_frame, goal_frame = np.asarray(odom_frames, dtype=object)[o], np.asarray(goal_frames, dtype=object)[g]
        clash = (odom_frame != "") & (goal_frame != "") & (odom_frame != goal_frame)
        if clash.any():
            k = int(np.argmax(clash))
            raise DatasetError(
                f"{reader.path}: goal frame {goal_frame[k]!r} differs from odometry frame {odom_frame[k]!r}"
            )
        pose = odoms.values[o]
        goal_vec[both] = goal_features(_quat_rotate_inverse(pose[:, 3:7], goals.values[g] - pose[:, :3]))
    if topics.get(config.goal_topic) is not None:
        lost = keep & ~both
        _count(stats, "no odometry/goal within max_age", int(lost.sum()))
        keep &= both
    kept = np.flatnonzero(keep)
    t = times[kept]
    step = np.diff(t)
    repeated = np.concatenate([[False], step == 0])
    _count(stats, "repeated frame stamp", int(repeated.sum()))
    kept, t = kept[~repeated], t[~repeated]
    gaps = np.concatenate([[0], np.diff(t)]) if len(t) else np.zeros(0, np.int64)
    dt = gaps / _NS
    cuts = np.flatnonzero(gaps > config.max_gap * _NS)
    if len(t):
        dt[0] = nominal
    dt[cuts] = nominal  # a sequence starts with the nominal period
    imu_i = imus.as_of(times)
    imu_all, cmd_all = imus.values.astype(np.float32), commands.values.astype(np.float32)
    sequences: list[dict[str, np.ndarray]] = []
    for part in np.split(np.arange(len(t)), cuts):
        if len(part) < config.min_sequence:
            if len(part):
                stats.drop("sequence shorter than min_sequence", len(part))
            continue
        frames = kept[part]
        imu = np.zeros((len(frames), 6), np.float32)
        has_imu = imu_i[frames] >= 0
        imu[has_imu] = imu_all[imu_i[frames][has_imu]]
        # One copy straight into C order: np.stack of the transposed views is not C-contiguous, and the
        # writer would copy it a second time.
        image = np.empty((len(frames), 3, config.height, config.width), np.uint8)
        for k, i in enumerate(frames):
            image[k] = images[order[i]].transpose(2, 0, 1)
        sequences.append(
            {
                "image": image,
                "command": cmd_all[cmd_i[frames]],
                "goal": goal_vec[frames],
                "imu": imu,
                "dt": dt[part].astype(np.float32),
            }
        )
    stats.frames_kept = sum(len(s["dt"]) for s in sequences)
    stats.sequences = len(sequences)
    return sequences


def _camera_hfov(reader: BagReader, topic: str) -> float | None:
    """Horizontal field of view (deg) from the first ``CameraInfo`` of ``topic``; None if its ``K`` cannot tell."""
    from lnn_nav.models.preprocess import hfov_from_intrinsics

    for _topic, msgtype, t_recv, raw in reader.raw_messages([topic]):
        msg = _deserialize(reader, raw, msgtype, topic, t_recv)
        return hfov_from_intrinsics(float(msg.k[0]), int(msg.width))
    return None


def one_camera(cameras: Iterable[tuple[float | None, str]]) -> float | None:
    """The one field of view of ``(hfov or None, source)`` pairs (None if none is known); two cameras are refused.

    Sources that do not know their camera (no CameraInfo) do not count against it.
    Used for the bags of a dataset and for the datasets of a training run.
    """
    from lnn_nav.models.preprocess import SAME_CAMERA_DEG

    known = [(h, src) for h, src in cameras if h is not None]
    if not known:
        return None
    low, high = min(known), max(known)
    if high[0] - low[0] > SAME_CAMERA_DEG:
        raise DatasetError(
            f"sources from cameras with different fields of view: {low[0]:.1f} deg ({low[1]}) and "
            f"{high[0]:.1f} deg ({high[1]}); a controller sees through one camera, so build one "
            "dataset, and train one controller, per camera"
        )
    return round(float(np.median([h for h, _ in known])), 3)


def find_bags(paths: Iterable[str | Path]) -> list[Path]:
    """Bags named directly, or every rosbag2 directory (holding ``metadata.yaml``) or lone .mcap/.db3 below a folder."""
    found: list[Path] = []
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
) -> tuple[BagStats, list[dict[str, np.ndarray]], int, tuple[str, str] | None]:
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
    progress: Any | None = None,
    skip_bad: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Convert ``bags`` into a dataset folder ``out``; returns the metadata written to meta.json.

    ``workers`` > 1 decodes bags in that many processes (bags are independent;
    frames are still written in bag order, so the result does not depend on it).
    """
    writer = _Writer(out, config)
    all_stats: list[BagStats] = []
    skipped: dict[str, str] = {}
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
            "format": FORMAT_VERSION,
            "config": asdict(config),
            "frames": writer.n,
            "sequences": len(writer.seq_start),
            "bags": [str(b) for b in bags],
            "stats": [asdict(s) for s in all_stats],
            "skipped": skipped,
            "seconds": elapsed,
            "bytes_read": read_bytes,
            "workers": workers,
            "camera_hfov_deg": one_camera((st.camera_hfov_deg, st.bag) for st in all_stats),
        }
        writer.finish(meta)
        return meta
    except BaseException:
        writer.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _rebuild_error(error: tuple[str, str]) -> Exception:
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
            raise DatasetError(
                f"{self.path}/images.u8 has {size} bytes; expected {expected} for {n} frames "
                f"of 3x{self.height}x{self.width} (truncated copy?)"
            )
        self.images = (
            np.memmap(self.path / "images.u8", np.uint8, "r", shape=(n, 3, self.height, self.width))
            if n
            else np.zeros((0, 3, self.height, self.width), np.uint8)
        )
        with np.load(self.path / "frames.npz") as f:
            self.command, self.goal, self.imu, self.dt = f["command"], f["goal"], f["imu"], f["dt"]
        #: Horizontal field of view of the camera the bags recorded (deg), None where they had no CameraInfo.
        self.camera_hfov_deg: float | None = self.meta.get("camera_hfov_deg")
        with np.load(self.path / "sequences.npz") as s:
            self.seq_start, self.seq_length, self.seq_bag = s["start"], s["length"], s["bag"]

    def __len__(self) -> int:
        return len(self.dt)

    def identity(self) -> str:
        """``<folder name>@<sha256 of its content, 16 hex digits>``: names the data, not where it lies.

        Checkpoints record this, not a path: the same data built on another
        machine or in another folder has the same digest, and any change to a
        frame, label or sequence boundary changes it.
        """
        digest = hashlib.sha256()
        for name in ("images.u8", "frames.npz", "sequences.npz"):
            with open(self.path / name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(block)
        return f"{self.path.name}@{digest.hexdigest()[:16]}"

    @property
    def num_sequences(self) -> int:
        return len(self.seq_start)
