"""The Warp physics substeps against the NumPy reference they replace: the same flights, state for state."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("warp")

from lnn_nav.sim import physics_kernel  # noqa: E402
from lnn_nav.sim.env import NavigationVectorEnv  # noqa: E402
from lnn_nav.sim.flight_controller import Quadrotor  # noqa: E402
from lnn_nav.sim.noise import DroneStreams  # noqa: E402
from lnn_nav.sim.wind import WindModel  # noqa: E402

# Measured on the x86_64 build machine: bit for bit (0.0). The bound leaves room for a compiler that
# fuses multiply-adds (aarch64), whose roundings the closed loop damps rather than grows.
TOLERANCE = 1e-9


@pytest.fixture
def reference():
    """A context in which the NumPy reference runs; the kernel path is restored afterwards."""
    previous = physics_kernel.reference_physics_forced()

    class Switch:
        def __call__(self, force: bool) -> None:
            physics_kernel.set_reference_physics(force)

    yield Switch()
    physics_kernel.set_reference_physics(previous)


def _state(q: Quadrotor) -> dict[str, np.ndarray]:
    s, c = q.state, q.controller
    out = {
        "position": s.position,
        "velocity": s.velocity,
        "quaternion": s.quaternion,
        "rotation": s.rotation,
        "angular_velocity": s.angular_velocity,
        "rotor_speeds": s.rotor_speeds,
        "specific_force": s.specific_force,
        "yaw_setpoint": c.yaw_setpoint,
        "vel_integral": c.vel_integral,
        "rate_integral": c.rate_integral,
        "wind_velocity": q.wind_velocity,
    }
    if q.wind is not None:
        out["gust"] = q.wind.gust
    return {k: np.array(v, copy=True) for k, v in out.items()}


def _fly(reference, use_reference: bool, n: int, wind: str, steps: int = 45, seed: int = 0) -> list[dict]:
    reference(use_reference)
    rng = np.random.default_rng(seed)
    model = None
    if wind != "none":
        streams = DroneStreams(n, np.random.default_rng(3)) if wind == "streams" else np.random.default_rng(3)
        model = WindModel(rng=streams, num_drones=n)
        gusts = [1.5] * n if wind != "calm" else [0.0] * n
        if wind == "streams":
            gusts[0] = 0.0  # a still drone among gusty ones draws nothing
        model._set(slice(None), n, [[2.0, -1.0, 0.3]] * n, gusts, [0.8] * n)
    q = Quadrotor(num_drones=n, wind=model)
    q.reset(rng.uniform(-5, 5, (n, 3)) + [0, 0, 3], rng.uniform(-3, 3, n))
    # Hard manoeuvres: saturations, anti-windup and the mixer's desaturation all take part.
    commands = rng.uniform(-7, 7, (steps, n, 4))
    trace = []
    for k in range(steps):
        q.step(commands[k], 1 / 15)
        trace.append(_state(q))
    return trace


@pytest.mark.parametrize(("n", "wind"), [(1, "none"), (4, "gusts"), (3, "streams"), (2, "calm"), (16, "gusts")])
def test_kernel_flies_the_reference_state_for_state(reference, n, wind):
    expected = _fly(reference, True, n, wind)
    got = _fly(reference, False, n, wind)
    for k, (a, b) in enumerate(zip(expected, got)):
        assert a.keys() == b.keys()
        for name in a:
            assert a[name].shape == b[name].shape, name
            err = np.abs(a[name] - b[name]).max()
            assert err <= TOLERANCE * max(1.0, np.abs(a[name]).max()), f"{name} after step {k}: {err}"


def test_the_kernel_runs_unless_the_reference_is_forced(reference):
    q = Quadrotor(num_drones=2)
    q.controller.set_command(np.zeros((2, 4)))
    reference(False)
    assert physics_kernel.try_step(q, 3, 1 / 400)
    reference(True)
    assert not physics_kernel.try_step(q, 3, 1 / 400)


def test_replaced_arrays_are_new_and_position_updates_in_place_as_in_the_reference(reference):
    reference(False)
    q = Quadrotor(num_drones=2)
    q.reset(np.array([[0.0, 0.0, 2.0], [1.0, 0.0, 2.0]]))
    position, quaternion, rotation = q.state.position, q.state.quaternion, q.state.rotation
    before_q, before_r = quaternion.copy(), rotation.copy()
    q.step(np.array([[2.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.5, -1.0]]), 1 / 15)
    assert q.state.position is position and not np.array_equal(position, [[0.0, 0.0, 2.0], [1.0, 0.0, 2.0]])
    assert q.state.quaternion is not quaternion and np.array_equal(quaternion, before_q)
    assert q.state.rotation is not rotation and np.array_equal(rotation, before_r)


def test_an_environment_sees_the_same_frames_and_states_either_way(reference):
    outs = []
    for use_reference in (True, False):
        reference(use_reference)
        env = NavigationVectorEnv(num_envs=2, kind="forest", render_workers=0, preset="gusty_wind")
        try:
            obs, _ = env.reset(seed=5)
            frames = [obs["image"].copy()]
            actions = np.array([[2.0, 0.3, 0.0, 0.4], [1.5, -0.3, 0.1, -0.2]])
            for _ in range(10):
                obs, *_ = env.step(actions)
                frames.append(obs["image"].copy())
            outs.append((np.stack(frames), obs["imu"].copy(), env.batch.quad.state.position.copy()))
        finally:
            env.close()
    (f_ref, imu_ref, p_ref), (f_new, imu_new, p_new) = outs
    np.testing.assert_allclose(p_new, p_ref, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(imu_new, imu_ref, rtol=0, atol=1e-6)
    assert np.array_equal(f_new, f_ref)


def test_a_kernel_that_cannot_build_leaves_the_reference_flying_with_one_warning(reference, monkeypatch):
    import warp as wp

    reference(False)
    monkeypatch.setattr(physics_kernel, "_kernel_ran", False)
    monkeypatch.setattr(physics_kernel, "_kernel", physics_kernel._kernel)

    def broken(*args, **kwargs):
        raise RuntimeError("clang: no such file")

    monkeypatch.setattr(wp, "launch", broken)
    q = Quadrotor(num_drones=1)
    q.reset(np.array([[0.0, 0.0, 2.0]]))
    with pytest.warns(RuntimeWarning, match="NumPy physics runs instead"):
        q.step(np.array([[1.0, 0.0, 0.0, 0.0]]), 1 / 15)
    assert q.state.velocity[0, 0] > 0.0  # the reference flew the step
    assert physics_kernel._kernel is False
