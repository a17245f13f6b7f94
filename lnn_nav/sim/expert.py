"""Privileged expert: plans on ground truth and flies smooth velocity commands to the goal.

It sees what no onboard policy sees (every obstacle, the exact pose, the
goal) and is used to demonstrate and to label states (behaviour cloning,
DAgger). Plan: a cost-to-go field from the goal over a 2D occupancy grid at
flight altitude (obstacles inflated by the drone radius plus a margin), with
a clearance cost that keeps the path away from trunks and walls; Dijkstra on
the 8-connected grid (scipy). Track: follow the field's next-hop chain a
fixed look-ahead distance and fly towards that carrot at cruise speed, slowing
for turns and near the goal; yaw follows the direction of travel so the
forward camera sees where the drone flies (or a carrot farther along the plan,
``yaw_lookahead``, so the camera turns into a bend before the drone does).

The command is ``[vx, vy, vz, yaw_rate]`` in the heading frame (body FLU
rotated by yaw only), the convention of :mod:`lnn_nav.sim.flight_controller`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .occupancy import occupancy_grid
from .world import WorldSpec

# 8-connected grid moves and their lengths (in cells).
_MOVES = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)])
_MOVE_LEN = np.hypot(_MOVES[:, 0], _MOVES[:, 1])


@dataclass(frozen=True)
class ExpertConfig:
    """Tuning of the expert. Speeds in m/s, distances in m, rates in rad/s."""

    cruise_speed: float = 3.0
    max_speed: float = 6.0
    lookahead: float = 3.0
    # Look-ahead of the heading alone (m); None: ``lookahead``. Longer, the camera swings
    # towards a turn while the drone still tracks the plan at ``lookahead``, so the turn
    # shows in the image and the yaw command before the drone cuts the corner.
    yaw_lookahead: float | None = None
    resolution: float = 0.25
    inflate: float = 0.6  # drone collision radius (0.25) + 0.35 m margin
    clearance_weight: float = 6.0
    clearance_scale: float = 0.8
    max_accel: float = 3.0  # command slew limit (m/s^2): smooth demonstrations
    altitude_gain: float = 1.2
    max_vertical_speed: float = 1.0
    yaw_gain: float = 2.5
    max_yaw_rate: float = 1.5
    # Heading error (rad) the yaw law ignores; the velocity still points along the plan,
    # so within it the command slides sideways instead of turning. 0 for demonstrations;
    # a DAgger labeller option (see lnn_nav.train.dagger).
    yaw_deadband: float = 0.0
    goal_slow_radius: float = 5.0

    def __post_init__(self) -> None:
        if not 0 < self.cruise_speed <= self.max_speed:
            raise ValueError(f"cruise_speed must be in (0, max_speed={self.max_speed}], got {self.cruise_speed}")
        if self.resolution <= 0 or self.lookahead <= 0:
            raise ValueError("resolution and lookahead must be > 0")
        if self.yaw_lookahead is not None and not self.yaw_lookahead > 0:
            raise ValueError(f"yaw_lookahead must be > 0 (m) or None, got {self.yaw_lookahead}")
        if self.inflate < 0:
            raise ValueError(f"inflate must be >= 0 (m), got {self.inflate}")
        if self.clearance_weight < 0 or self.clearance_scale <= 0:
            raise ValueError(
                f"clearance_weight must be >= 0 and clearance_scale > 0 (m), got "
                f"{self.clearance_weight} and {self.clearance_scale}"
            )
        if not 0 <= self.yaw_deadband < math.pi:
            raise ValueError(f"yaw_deadband must be in [0, pi) rad, got {self.yaw_deadband}")


#: ``ExpertConfig`` overrides of the expert that demonstrates and labels (``lnn-nav collect``,
#: DAgger, the ``expert`` row of evaluations, ``expert_node``). A lighter clearance cost
#: than the default 6: its paths then bend only round obstacles the camera can see, so a
#: learner can tell from the image why it turns (with 6 the global plan detours round far
#: clusters and the labels are largely unpredictable from onboard). It cruises at 2 m/s
#: rather than 3: a learner reacts a few frames late, and at 3 m/s that lag alone crashed
#: it (the 3 m/s CfC-NCP flown with its horizontal command scaled by 0.6 went from 13/40
#: to 26/40 forest successes on the same seeds). Its plan keeps 0.8 m from obstacles
#: (inflate; 0.55 m of margin beyond the drone's radius) rather than 0.6: learners
#: copy the expert's passing distance with errors of a few tenths of a metre, and with
#: the 0.35 m margin most of their collisions grazed a trunk or street pole passing
#: it, 8-87 degrees off the heading, median 51 (the expert's own passes: 0.67 m median clearance;
#: the 2 m/s CfC-NCP's successful passes: 0.44 m). 1.0 m closed 9 of 40 forest worlds.
DEMO_EXPERT: dict[str, float] = {"clearance_weight": 1.0, "cruise_speed": 2.0, "inflate": 0.8}

#: Per-world changes to :data:`DEMO_EXPERT`. Urban: a strong, wide clearance cost (weight 8
#: falling off over 4 m rather than 1 over 0.8 m) keeps the plan on the street's centre line,
#: which the generator keeps free of poles and parked cars. With the forest's light cost the
#: expert cut corners across sidewalks and passed a street pole within 1 m about once a
#: flight (16 training worlds: 3.4 passes within 3 m per flight, none with this cost, for
#: 6% more flight time), and learners crashed into those 0.24 m poles, one or two pixels
#: wide in their 64x48 frames, in a quarter of the held-out worlds. The forest keeps the
#: light cost: between trunks there is no lane, and a wide cost detours round far clusters.
DEMO_EXPERT_WORLD: dict[str, dict[str, float]] = {"urban": {"clearance_weight": 8.0, "clearance_scale": 4.0}}


def demo_expert(kind: str) -> dict[str, float]:
    """``ExpertConfig`` overrides of the demonstrating expert in worlds of ``kind`` (forest, urban)."""
    return {**DEMO_EXPERT, **DEMO_EXPERT_WORLD.get(kind, {})}


class PrivilegedExpert:
    """Expert for one world; ``command`` is vectorised over drones in that world."""

    def __init__(self, world: WorldSpec, config: ExpertConfig | None = None) -> None:
        self.world = world
        self.config = config = config or ExpertConfig()
        altitude = world.goal[2]
        occupied, origin = occupancy_grid(world, altitude, config.inflate, config.resolution)
        self.origin = np.asarray(origin, dtype=np.float64)
        self.shape = occupied.shape
        self.goal_cell = self._cell(np.array([world.goal[:2]]))[0]
        start_cell = self._cell(np.array([world.start[:2]]))[0]
        occupied = occupied.copy()
        # Leaving the world ends an episode like a crash: keep the plan off its edges.
        edge = int(np.ceil(config.inflate / config.resolution))
        occupied[:edge, :] = occupied[-edge:, :] = True
        occupied[:, :edge] = occupied[:, -edge:] = True
        # Start and goal are kept clear by the generators; the inflated grid may
        # still graze them, and an occupied goal would make the field empty.
        for cx, cy in (self.goal_cell, start_cell):
            occupied[max(cx - 1, 0) : cx + 2, max(cy - 1, 0) : cy + 2] = False
        self.occupied = occupied
        free = ~occupied
        # scipy (the `sim` extra) loads with the first plan, not with this module: `lnn-nav collect --help`
        # shows the expert's defaults (ExpertConfig, DEMO_EXPERT) without it.
        from scipy import ndimage

        clearance = ndimage.distance_transform_edt(free) * config.resolution
        #: Distance (m) from each free cell to the inflated obstacles (0 inside them).
        self.clearance = clearance
        self.cell_cost = 1.0 + config.clearance_weight * np.exp(-clearance / config.clearance_scale)
        self.cost_to_go = self._plan(free)
        self.next_hop = self._next_hops()
        # For a drone inside an inflated cell: the nearest free cell.
        _, nearest = ndimage.distance_transform_edt(occupied, return_indices=True)
        self._nearest_free = nearest
        self.reachable = bool(np.isfinite(self.cost_to_go[tuple(start_cell)]))
        self._last: np.ndarray | None = None

    # -- planning -------------------------------------------------------------
    def _cell(self, xy: np.ndarray) -> np.ndarray:
        cells = np.floor((xy - self.origin) / self.config.resolution).astype(np.int64)
        return np.clip(cells, 0, np.array(self.shape) - 1)

    def _plan(self, free: np.ndarray) -> np.ndarray:
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import dijkstra

        nx, ny = self.shape
        index = np.arange(nx * ny).reshape(nx, ny)
        rows, cols, weights = [], [], []
        for (dx, dy), length in zip(_MOVES, _MOVE_LEN):
            xs = slice(max(-dx, 0), nx - max(dx, 0))
            ys = slice(max(-dy, 0), ny - max(dy, 0))
            xt = slice(max(dx, 0), nx - max(-dx, 0))
            yt = slice(max(dy, 0), ny - max(-dy, 0))
            ok = free[xs, ys] & free[xt, yt]
            if dx and dy:  # no corner cutting past an occupied cell
                ok &= free[xt, ys] & free[xs, yt]
            rows.append(index[xs, ys][ok])
            cols.append(index[xt, yt][ok])
            w = 0.5 * (self.cell_cost[xs, ys] + self.cell_cost[xt, yt]) * length * self.config.resolution
            weights.append(w[ok])
        graph = coo_matrix(
            (np.concatenate(weights), (np.concatenate(rows), np.concatenate(cols))), shape=(nx * ny,) * 2
        ).tocsr()
        goal_index = index[tuple(self.goal_cell)]
        # Edge weights are symmetric, so distances *to* the goal = distances from it.
        return dijkstra(graph, directed=True, indices=goal_index).reshape(nx, ny)

    def _next_hops(self) -> np.ndarray:
        """For each cell, the flat index of its lowest cost-to-go neighbour (itself at the goal)."""
        nx, ny = self.shape
        padded = np.pad(self.cost_to_go, 1, constant_values=np.inf)
        best = self.cost_to_go.copy()
        hop = np.arange(nx * ny).reshape(nx, ny)
        gx, gy = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
        for dx, dy in _MOVES:
            neighbour = padded[1 + dx : 1 + dx + nx, 1 + dy : 1 + dy + ny]
            better = neighbour < best
            best = np.where(better, neighbour, best)
            hop = np.where(better, (gx + dx) * ny + (gy + dy), hop)
        return hop.reshape(-1)

    def path(self, start_xy: tuple[float, float], max_steps: int = 100000) -> np.ndarray:
        """The planned path from a point to the goal as ``[P, 2]`` world xy (for plots)."""
        cell = self._free_cell(self._cell(np.asarray([start_xy], dtype=np.float64)))[0]
        ny = self.shape[1]
        flat = cell[0] * ny + cell[1]
        points = [flat]
        for _ in range(max_steps):
            nxt = self.next_hop[flat]
            if nxt == flat:
                break
            flat = nxt
            points.append(flat)
        cells = np.stack([np.array(points) // ny, np.array(points) % ny], axis=1)
        return self.origin + (cells + 0.5) * self.config.resolution

    def _free_cell(self, cells: np.ndarray) -> np.ndarray:
        nearest = self._nearest_free[:, cells[:, 0], cells[:, 1]].T
        return nearest

    # -- tracking -------------------------------------------------------------
    def _carrot(self, xy: np.ndarray, flat: np.ndarray, lookahead: float) -> np.ndarray:
        """The farthest point up to ``lookahead`` (m) along the plan that the drone sees in a straight line.

        Aiming at a fixed look-ahead point would cut corners round trunks; the
        line-of-sight test against the inflated grid keeps the straight flight
        segment as clear as the plan itself.
        """
        cfg = self.config
        ny = self.shape[1]
        hops = max(1, int(round(lookahead / cfg.resolution)))
        chain = [flat]
        for _ in range(hops):
            chain.append(self.next_hop[chain[-1]])
        cells = np.stack(chain[1:], axis=1)  # [N, hops]
        points = self.origin + (np.stack([cells // ny, cells % ny], axis=-1) + 0.5) * cfg.resolution
        # Sample each drone->candidate segment at half-cell spacing.
        samples = np.linspace(0.0, 1.0, 2 * hops + 2)[1:]
        seg = xy[:, None, None, :] + samples[None, None, :, None] * (points[:, :, None, :] - xy[:, None, None, :])
        seg_cells = self._cell(seg.reshape(-1, 2)).reshape(*seg.shape[:3], 2)
        blocked = self.occupied[seg_cells[..., 0], seg_cells[..., 1]].any(axis=2)  # [N, hops]
        visible = ~blocked
        visible[:, 0] = True  # the next cell is always a legal target
        # Farthest visible candidate before the first blocked one.
        first_blocked = np.where(blocked[:, 1:].any(axis=1), blocked[:, 1:].argmax(axis=1) + 1, hops)
        pick = np.maximum(first_blocked - 1, 0)
        return points[np.arange(len(xy)), pick]

    def _towards_carrot(
        self, xy: np.ndarray, flat: np.ndarray, lookahead: float, goal: np.ndarray, dist_goal: np.ndarray
    ) -> np.ndarray:
        """Unit vectors ``[N, 2]`` from ``xy`` to the carrot ``lookahead`` ahead; the goal itself once nearer."""
        carrot = self._carrot(xy, flat, lookahead)
        # Close to the goal, aim at the goal itself rather than a grid cell centre.
        carrot[dist_goal < lookahead] = goal
        direction = carrot - xy
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        return np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 1e-6)

    def reset(self) -> None:
        """Forget the previous command (the slew limit starts fresh)."""
        self._last = None

    def command(
        self,
        position: np.ndarray,
        yaw: np.ndarray,
        dt: float,
    ) -> np.ndarray:
        """Heading-frame commands ``[N, 4]`` for drones at ``position`` ``[N, 3]`` with ``yaw`` ``[N]``.

        ``dt`` is the control period (for the slew limit). Pure in the state
        apart from that limit, so it can label any visited state (DAgger);
        call :meth:`reset` between episodes.
        """
        cfg = self.config
        position = np.atleast_2d(np.asarray(position, dtype=np.float64))
        yaw = np.atleast_1d(np.asarray(yaw, dtype=np.float64))
        n = position.shape[0]
        cells = self._free_cell(self._cell(position[:, :2]))
        ny = self.shape[1]
        flat = cells[:, 0] * ny + cells[:, 1]
        goal = np.asarray(self.world.goal[:2])
        dist_goal = np.linalg.norm(goal - position[:, :2], axis=1)
        direction = self._towards_carrot(position[:, :2], flat, cfg.lookahead, goal, dist_goal)
        heading_error = _wrap(np.arctan2(direction[:, 1], direction[:, 0]) - yaw)
        yaw_error = heading_error
        if cfg.yaw_lookahead is not None and cfg.yaw_lookahead != cfg.lookahead:
            ahead = self._towards_carrot(position[:, :2], flat, cfg.yaw_lookahead, goal, dist_goal)
            yaw_error = _wrap(np.arctan2(ahead[:, 1], ahead[:, 0]) - yaw)
        speed = np.full(n, cfg.cruise_speed)
        speed = np.minimum(speed, cfg.cruise_speed * np.clip(dist_goal / cfg.goal_slow_radius, 0.3, 1.0))
        # Turn first, then fly: keeps the camera pointed along the flight path.
        speed *= np.clip(np.cos(heading_error), 0.15, 1.0)
        # Slow down in tight gaps, where tracking lag matters most.
        clearance = self.clearance[cells[:, 0], cells[:, 1]]
        speed *= np.clip((clearance + 0.3) / 1.2, 0.4, 1.0)
        v_world = np.column_stack(
            [
                direction * speed[:, None],
                np.clip(
                    cfg.altitude_gain * (self.world.goal[2] - position[:, 2]),
                    -cfg.max_vertical_speed,
                    cfg.max_vertical_speed,
                ),
            ]
        )
        # Slew-limit in the world frame: in the heading frame a fast yaw would
        # itself swing the command around.
        if self._last is not None and self._last.shape == v_world.shape and dt > 0:
            step = cfg.max_accel * dt
            v_world = self._last + np.clip(v_world - self._last, -step, step)
        self._last = v_world.copy()
        turn = np.sign(yaw_error) * np.maximum(np.abs(yaw_error) - cfg.yaw_deadband, 0.0)
        yaw_rate = np.clip(cfg.yaw_gain * turn, -cfg.max_yaw_rate, cfg.max_yaw_rate)
        c, s = np.cos(yaw), np.sin(yaw)
        return np.stack(
            [c * v_world[:, 0] + s * v_world[:, 1], -s * v_world[:, 0] + c * v_world[:, 1], v_world[:, 2], yaw_rate],
            axis=1,
        )


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + math.pi) % (2 * math.pi) - math.pi
