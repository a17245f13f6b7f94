"""Pictures of episodes: top-down map with trajectories, onboard-camera GIF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .world import MATERIALS, WorldSpec


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless machines: no display
    import matplotlib.pyplot as plt

    return plt


def plot_top_down(
    world: WorldSpec,
    path: Path,
    trajectories: dict[str, np.ndarray] | None = None,
    planned: np.ndarray | None = None,
    title: str = "",
    crashes: dict[str, np.ndarray] | None = None,
) -> Path:
    """World footprint (trunks, canopies faint, buildings, cars, poles) and ``[T, 2+]`` xy tracks."""
    plt = _pyplot()
    from matplotlib.patches import Circle, Polygon

    palette = world.palette
    fig, ax = plt.subplots(
        figsize=(8, 8 * (world.bounds[3] - world.bounds[2]) / (world.bounds[1] - world.bounds[0]) + 0.8)
    )
    ax.set_facecolor(palette["ground"])
    for (x, y, _z, r), m in zip(world.spheres, world.sphere_materials):
        name = MATERIALS[m]
        if name == "leaves":
            ax.add_patch(Circle((x, y), r, color=palette["leaves"], alpha=0.15, lw=0))
        else:
            ax.add_patch(Circle((x, y), r, color=palette[name], alpha=0.8, lw=0))
    for (x, y, _z0, _z1, r), m in zip(world.cylinders, world.cylinder_materials):
        ax.add_patch(Circle((x, y), max(r, 0.12), color=np.array(palette[MATERIALS[m]]) * 0.7, lw=0))
    for (cx, cy, _cz, hx, hy, _hz, yaw), m in zip(world.boxes, world.box_materials):
        c, s = np.cos(yaw), np.sin(yaw)
        corners = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]]) @ np.array([[c, s], [-s, c]])
        ax.add_patch(Polygon(corners + [cx, cy], color=palette[MATERIALS[m]], ec="k", lw=0.3))
    if planned is not None and len(planned):
        ax.plot(planned[:, 0], planned[:, 1], "--", color="white", lw=1.0, label="expert plan")
    for i, (name, track) in enumerate((trajectories or {}).items()):
        track = np.asarray(track)
        ax.plot(track[:, 0], track[:, 1], lw=1.8, color=plt.cm.tab10(i % 10), label=name)
        if crashes and name in crashes and crashes[name] is not None:
            ax.plot(*np.asarray(crashes[name])[:2], marker="x", ms=10, mew=2.5, color="red")
    ax.plot(*world.start[:2], marker="o", ms=9, color="white", mec="k", label="start")
    ax.plot(*world.goal[:2], marker="*", ms=16, color=palette["beacon"], mec="k", label="goal")
    ax.set_xlim(world.bounds[0], world.bounds[1])
    ax.set_ylim(world.bounds[2], world.bounds[3])
    ax.set_aspect("equal")
    ax.set_xlabel("x east (m)")
    ax.set_ylabel("y north (m)")
    ax.set_title(title or f"{world.kind} seed {world.seed} ({world.conditions.season})", fontsize=10)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_gif(
    frames: Sequence[np.ndarray], path: Path, fps: float = 15.0, scale: int = 2, colors: int | None = None
) -> Path:
    """``[H, W, 3]`` uint8 frames to an animated GIF (nearest-neighbour upscaled by ``scale``).

    ``colors``: one palette of that many colours for the whole GIF, taken
    from a sample of its frames, without dithering (camera noise dithered
    per frame defeats the GIF's compression: 64 colours halve the file).
    """
    from PIL import Image

    if not len(frames):
        raise ValueError("write_gif needs at least one frame")
    images = []
    for frame in frames:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 [H, W, 3], got {frame.dtype} {list(frame.shape)}")
        image = Image.fromarray(frame)
        if scale != 1:
            image = image.resize((frame.shape[1] * scale, frame.shape[0] * scale), Image.Resampling.NEAREST)
        images.append(image)
    if colors is not None:
        if not 2 <= colors <= 256:
            raise ValueError(f"colors must be in [2, 256], got {colors}")
        sample = images[:: max(1, len(images) // 16)]
        mosaic = Image.new("RGB", (sample[0].width, sample[0].height * len(sample)))
        for k, image in enumerate(sample):
            mosaic.paste(image, (0, k * sample[0].height))
        palette = mosaic.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
        images = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(
        path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, optimize=colors is not None
    )
    return path
