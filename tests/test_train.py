"""Behaviour cloning: lanes and truncated BPTT, learning, checkpoints, resume, DDP on gloo, DAgger."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lnn_nav.data import messages as m
from lnn_nav.data.bags import BagWriter
from lnn_nav.data.dataset import DatasetConfig, build_dataset
from lnn_nav.models.checkpoint import load_policy
from lnn_nav.train.bc import MODEL_KINDS, LaneBatcher, TrainConfig, _Augment, _Data, split_sequences, train
from lnn_nav.train.cli_train import MODEL_KINDS as CLI_MODEL_KINDS

NS = 1_000_000_000


def _synthetic_bag(path: Path, frames: int, seed: int, hfov_deg: float | None = None) -> None:
    """Bright left half -> turn right, bright right half -> turn left: a command the image determines.

    ``hfov_deg``: a CameraInfo of that field of view beside each frame.
    """
    rng = np.random.default_rng(seed)
    with BagWriter(path, typestore=m.STORE) as bag:
        for topic in ("/camera/image_raw", "/cmd_vel", "/odom", "/goal_pose"):
            bag.add_topic(topic, m.SIM_TOPICS[topic])
        if hfov_deg is not None:
            bag.add_topic(m.TOPIC_CAMERA_INFO, m.SIM_TOPICS[m.TOPIC_CAMERA_INFO])
            fx = 16.0 / np.tan(np.radians(hfov_deg) / 2)
        bag.write("/goal_pose", NS, m.pose_stamped((20.0, 0.0, 2.0), NS))
        side = rng.integers(0, 2)
        for k in range(frames):
            t = NS + k * 66_666_667
            if rng.random() < 0.15:
                side = 1 - side
            rgb = np.full((24, 32, 3), 40, np.uint8)
            rgb[:, :16] += np.uint8(150 * (side == 0))
            rgb[:, 16:] += np.uint8(150 * (side == 1))
            bag.write("/camera/image_raw", t, m.image(rgb, t))
            if hfov_deg is not None:
                bag.write(m.TOPIC_CAMERA_INFO, t, m.camera_info(32, 24, (fx, fx, 15.5, 11.5), t))
            bag.write("/odom", t, m.odometry((0.1 * k, 0, 2), (1, 0, 0, 0), (1, 0, 0), (0, 0, 0), t))
            bag.write("/cmd_vel", t, m.twist_stamped((1.5, 0.0, 0.0, -0.8 if side == 0 else 0.8), t))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train")
    bags = []
    for k in range(6):
        _synthetic_bag(root / f"bag{k}", 60 + 7 * k, seed=k)
        bags.append(root / f"bag{k}")
    build_dataset(bags, root / "ds", DatasetConfig(height=24, width=32, min_sequence=4))
    return root / "ds"


def _cfg(dataset: Path, out: Path, **kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(
        data=[str(dataset)],
        out=str(out),
        epochs=2,
        batch_size=4,
        window=8,
        lr=5e-3,
        warmup_steps=5,
        val_fraction=0.2,
        threads=1,
        feature_dim=8,
        core_options={"units": 12},
    )
    base.update(kw)
    return TrainConfig(**base)


def test_cli_lists_the_same_model_kinds() -> None:
    assert CLI_MODEL_KINDS == MODEL_KINDS


def test_split_keeps_whole_sequences_apart() -> None:
    train_idx, val_idx = split_sequences(10, 0.2, seed=3)
    assert len(val_idx) == 2 and not set(train_idx) & set(val_idx) and len(train_idx) + len(val_idx) == 10
    assert split_sequences(10, 0.2, seed=3) == (train_idx, val_idx)


def test_augmentation_follows_the_batch_device_and_its_seed() -> None:
    # The batch goes to the training device before augmentation: the per-lane
    # parameters must follow it (a GPU run failed here with a device mismatch
    # on 2026-11-29). "meta" stands in for a GPU on this CPU-only machine.
    images = torch.randint(0, 256, (2, 3, 3, 8, 8), dtype=torch.uint8)

    def run(device: str) -> torch.Tensor:
        rng = np.random.default_rng(4)
        augment = _Augment(2, rng, True, 0.02)
        augment.redraw(0)
        augment.redraw(1)
        return augment(images.to(device), torch.Generator().manual_seed(9))

    assert run("meta").device.type == "meta"
    first, again = run("cpu"), run("cpu")
    assert torch.equal(first, again)  # same seeds, same augmented batch
    plain = images.float() / 255.0
    assert not torch.allclose(first, plain, atol=1e-3) and float(first.min()) >= 0.0 and float(first.max()) <= 1.0


def test_the_checkpoint_records_the_camera_of_its_bags_and_evaluation_flies_it(dataset: Path, tmp_path: Path) -> None:
    from lnn_nav.eval.closed_loop import eval_job
    from lnn_nav.rollouts.flights import camera_hfov_for

    for hfov in (90.0, 120.0):
        _synthetic_bag(tmp_path / f"bag{hfov:.0f}", 40, seed=1, hfov_deg=hfov)
        build_dataset(
            [tmp_path / f"bag{hfov:.0f}"],
            tmp_path / f"ds{hfov:.0f}",
            DatasetConfig(height=24, width=32, min_sequence=4),
        )
    quick = dict(epochs=1, max_steps_per_epoch=2, val_fraction=0.0)
    train(_cfg(tmp_path / "ds90", tmp_path / "r90", **quick), progress=False, log=lambda _s: None)
    ckpt = str(tmp_path / "r90" / "best.safetensors")
    assert load_policy(ckpt).config.camera_hfov_deg == pytest.approx(90.0)
    assert eval_job(ckpt, "forest", [1000]).camera_hfov == pytest.approx(90.0)
    assert camera_hfov_for(ckpt, 90.3) == (90.3, None)  # within half a degree: the same camera
    hfov, warning = camera_hfov_for(ckpt, 120.0)  # flown as asked (a stress test), but said
    assert hfov == 120.0 and "trained with a 90.0 deg camera and flies a 120.0 deg one" in warning
    # A fine-tune on another camera's data: the result is that camera's, and the log says so.
    lines: list = []
    train(_cfg(tmp_path / "ds120", tmp_path / "r120", init=ckpt, **quick), progress=False, log=lines.append)
    assert "camera: 120.0 deg horizontal field of view, recorded in the checkpoint" in lines
    assert load_policy(tmp_path / "r120" / "best.safetensors").config.camera_hfov_deg == pytest.approx(120.0)
    assert any("trained with a 90.0 deg camera on 120.0 deg data" in line for line in lines)
    with pytest.raises(ValueError, match="different fields of view"):
        _Data([str(tmp_path / "ds90"), str(tmp_path / "ds120")])
    # Bags without CameraInfo: not recorded, and evaluation flies the simulator's 90 degrees.
    lines = []
    train(_cfg(dataset, tmp_path / "plain", **quick), progress=False, log=lines.append)
    assert any(line.startswith("camera: unknown (no CameraInfo") for line in lines)
    plain = str(tmp_path / "plain" / "best.safetensors")
    assert load_policy(plain).config.camera_hfov_deg is None
    assert camera_hfov_for(plain) == (90.0, None) == camera_hfov_for(None)
    assert camera_hfov_for(plain, 120.0) == (120.0, None)  # nothing recorded to contradict


def test_a_checkpoint_fine_tunes_on_frames_of_another_size(dataset: Path, tmp_path: Path) -> None:
    # A 32x24 controller continues on 64x48 frames of the same bags: it trains, says so, and the
    # result takes 64x48 frames; its convolutions start from the 32x24 ones.
    root = dataset.parent
    build_dataset(
        [root / f"bag{k}" for k in range(6)], tmp_path / "ds64", DatasetConfig(height=48, width=64, min_sequence=4)
    )
    quick = dict(epochs=1, max_steps_per_epoch=2, val_fraction=0.0)
    train(_cfg(dataset, tmp_path / "small", **quick), progress=False, log=lambda _s: None)
    small = str(tmp_path / "small" / "best.safetensors")
    lines: list = []
    train(_cfg(tmp_path / "ds64", tmp_path / "big", init=small, lr=1e-9, **quick), progress=False, log=lines.append)
    assert any("was trained on 32x24 frames; the datasets hold 64x48" in line for line in lines)
    start, result = load_policy(small), load_policy(tmp_path / "big" / "best.safetensors")
    enc = result.config.encoder
    assert (enc.width, enc.height) == (64, 48) and result.config.core == start.config.core
    # lr 1e-9: the weights are still (to float precision) the ones carried over.
    torch.testing.assert_close(result.encoder.convs[0][0].weight, start.encoder.convs[0][0].weight)
    command, _ = result.step(
        torch.rand(1, 3, 48, 64),
        torch.tensor([1 / 15]),
        result.initial_state(1),
        goal=torch.tensor([[1.0, 0.0, 0.0, 20.0]]),
    )
    assert command.shape == (1, 4) and torch.isfinite(command).all()
    # The same step serves --init-encoder: the 32x24 encoder under a new LSTM core, at 64x48.
    lines = []
    train(
        _cfg(tmp_path / "ds64", tmp_path / "lstm64", model="lstm", init_encoder=small, lr=1e-9, **quick),
        progress=False,
        log=lines.append,
    )
    assert any("was trained on 32x24 frames; the datasets hold 64x48" in line for line in lines)
    result = load_policy(tmp_path / "lstm64" / "best.safetensors")
    enc = result.config.encoder
    assert (enc.width, enc.height) == (64, 48) and result.config.core == "lstm"
    assert enc.feature_dim == start.config.encoder.feature_dim
    torch.testing.assert_close(result.encoder.convs[0][0].weight, start.encoder.convs[0][0].weight)
    command, _ = result.step(
        torch.rand(1, 3, 48, 64),
        torch.tensor([1 / 15]),
        result.initial_state(1),
        goal=torch.tensor([[1.0, 0.0, 0.0, 20.0]]),
    )
    assert command.shape == (1, 4) and torch.isfinite(command).all()


def test_lanes_walk_sequences_in_order_and_mark_restarts(dataset: Path) -> None:
    data = _Data([str(dataset)])
    indices = list(range(len(data.sequences)))
    rng = np.random.default_rng(0)
    batcher = LaneBatcher(data, indices, lanes=2, window=16, rng=rng, augment=_Augment(2, rng, False, 0.0))
    seen = {0: [], 1: []}
    for _ in range(20):
        batch, mask, fresh = batcher.next()
        for lane in range(2):
            if fresh[lane]:
                seen[lane].append([])
            n = int(mask[lane].sum())
            assert mask[lane, :n].all() and not mask[lane, n:].any()  # padding only at the end
            seen[lane][-1].append(batch["image"][lane, :n])
    # Each lane's windows of one sequence concatenate to that sequence's frames, in order.
    for lane in range(2):
        for chunks in seen[lane][:-1]:
            frames = np.concatenate(chunks)
            hits = [
                k
                for k, (_, s, n) in enumerate(data.sequences)
                if n == len(frames) and np.array_equal(data.sets[0].images[s : s + n], frames)
            ]
            assert hits, "a lane's windows do not reassemble a recorded sequence"


@pytest.mark.parametrize("model", ["cfc-ncp", "lstm"])
def test_training_learns_writes_checkpoints_and_metrics(dataset: Path, tmp_path: Path, model: str) -> None:
    torch.manual_seed(0)
    cfg = _cfg(
        dataset,
        tmp_path / model,
        model=model,
        epochs=6,
        augment=False,
        core_options={"units": 12} if model != "lstm" else {"units": 16},
    )
    summary = train(cfg, progress=False, log=lambda _s: None)
    hist = summary["history"]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"], hist
    policy = load_policy(tmp_path / model / "best.safetensors")
    assert policy.config.core == model and policy.config.use_goal
    with open(tmp_path / model / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(1, len(hist) + 1))
    assert list((tmp_path / model / "tensorboard").iterdir())


def test_resume_continues_where_it_stopped(dataset: Path, tmp_path: Path) -> None:
    train(_cfg(dataset, tmp_path / "r", epochs=1), progress=False, log=lambda _s: None)
    logs: list[str] = []
    summary = train(_cfg(dataset, tmp_path / "r", epochs=2), progress=False, log=logs.append)
    assert any("resumed" in line and "epoch 1" in line for line in logs)
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    with pytest.raises(ValueError, match="different training configuration"):
        train(_cfg(dataset, tmp_path / "r", epochs=3, lr=1e-4), progress=False, log=lambda _s: None)
    # A resume file that would run code when unpickled is refused, not executed.
    import pickle

    class Payload:
        def __reduce__(self):  # pragma: no cover - would run only if unpickled
            return (print, ("code ran",))

    (tmp_path / "r" / "resume.pt").write_bytes(pickle.dumps({"config": Payload()}))
    with pytest.raises(ValueError, match="more than tensors and plain data"):
        train(_cfg(dataset, tmp_path / "r", epochs=2), progress=False, log=lambda _s: None)


def test_distributed_training_on_two_gloo_processes(dataset: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        "-m",
        "lnn_nav.cli",
        "train",
        "--data",
        str(dataset),
        "--out",
        str(tmp_path / "ddp"),
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--window",
        "8",
        "--threads",
        "1",
        "--core-options",
        '{"units": 12}',
        "--no-progress",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    assert (tmp_path / "ddp" / "best.safetensors").is_file()


def test_train_cli_reports_bad_data(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lnn_nav.cli", "train", "--data", str(tmp_path), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "not a dataset folder" in result.stderr


@pytest.mark.parametrize(
    "command, option", [("train", "--core-options"), ("dagger", "--train-options"), ("dagger", "--expert-options")]
)
@pytest.mark.parametrize("text, message", [("[1]", "expected a JSON object"), ("{units: 4}", "not valid JSON")])
def test_json_options_are_refused_naming_the_option(
    tmp_path: Path, command: str, option: str, text: str, message: str
) -> None:
    need = ["--init", str(tmp_path / "x.safetensors")] if command == "dagger" else []
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            command,
            "--data",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            *need,
            option,
            text,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and f"{option}: {message}" in result.stderr, result.stderr
    assert not (tmp_path / "o").exists()


def test_dagger_round_flies_the_learner_labels_with_the_expert_and_retrains(dataset: Path, tmp_path: Path) -> None:
    from lnn_nav.data.bags import open_bag
    from lnn_nav.sim.presets import sample_training_conditions
    from lnn_nav.train.dagger import DaggerConfig, run_dagger

    train(_cfg(dataset, tmp_path / "bc", epochs=1), progress=False, log=lambda _s: None)
    cfg = DaggerConfig(
        init=str(tmp_path / "bc" / "best.safetensors"),
        data=[str(dataset)],
        out=str(tmp_path / "dg"),
        rounds=1,
        episodes=2,
        worlds=["forest"],
        epochs=1,
        workers=1,
        envs=2,
        train_overrides={"max_steps_per_epoch": 3, "threads": 1, "batch_size": 2, "window": 8},
        world_overrides={"size": (64.0, 40.0)},
        expert_overrides={"yaw_deadband": 3.0},
        randomization="wide",
    )
    result = run_dagger(cfg, log=lambda _s: None, progress=False)
    (round_info,) = result["rounds"]
    assert sum(round_info["rollout_outcomes"]["forest"].values()) == 2
    bags = sorted((tmp_path / "dg" / "round_1" / "bags" / "forest").iterdir())
    assert [b.name for b in bags] == ["forest_310000_r1", "forest_310001_r1"]  # every roll-out kept, labelled
    with open_bag(bags[0]) as bag:
        assert bag.topics()["/cmd_vel"].count == bag.topics()["/camera/image_raw"].count > 0
        yaw_labels = np.array([x.message.twist.angular.z for x in bag.messages(["/cmd_vel"])])
        (world_msg,) = [x.message.data for x in bag.messages(["/sim_node/world"])]
    # The roll-out flew the conditions the wide profile draws for that world seed.
    wide = sample_training_conditions(np.random.default_rng([310000, 7]), "wide")
    assert json.loads(world_msg)["conditions"] == json.loads(json.dumps(wide.__dict__))
    # The labelling expert's options reach the labels: a 3 rad deadband leaves only headings
    # more than 172 degrees off the plan turning (the plain yaw law is never exactly 0 here).
    assert np.mean(yaw_labels == 0.0) > 0.9
    assert Path(result["final"]).is_file() and (tmp_path / "dg" / "dagger.json").is_file()
    with pytest.raises(ValueError, match="expert options"):
        DaggerConfig(init="x", data=[], out="o", expert_overrides={"yaw_gian": 1.0})
    with pytest.raises(ValueError, match="yaw_deadband"):
        DaggerConfig(init="x", data=[], out="o", expert_overrides={"yaw_deadband": -1.0})
    per_world = DaggerConfig(
        init="x", data=[], out="o", expert_overrides={"lookahead": 4.0, "urban": {"yaw_lookahead": 6.0}}
    )
    assert per_world.labelling_expert("urban")["yaw_lookahead"] == 6.0
    assert per_world.labelling_expert("urban")["lookahead"] == per_world.labelling_expert("forest")["lookahead"] == 4.0
    assert "yaw_lookahead" not in per_world.labelling_expert("forest")
    with pytest.raises(ValueError, match="expert options"):
        DaggerConfig(init="x", data=[], out="o", expert_overrides={"urban": {"yaw_lookahed": 6.0}})
    with pytest.raises(ValueError, match="randomization must be one of narrow, wide"):
        DaggerConfig(init="x", data=[], out="o", randomization="wild")


def test_steer_weight_pulls_an_ambiguous_frames_command_towards_its_turning_labels() -> None:
    from lnn_nav.train.bc import _loss, frame_weights

    scale = torch.tensor([4.0, 3.0, 1.0, 1.5])
    # One camera view, four labels: three fly straight, one turns at 1.2 rad/s (the expert saw what the
    # camera cannot). A constant command fitted by the loss is their (weighted) mean.
    target = torch.tensor([[1.5, 0.0, 0.0, 0.0]] * 3 + [[1.5, 0.6, 0.0, 1.2]])
    mask = torch.ones(4)
    w = frame_weights(target, scale, 2.0)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 1.0, 1.0 + 2.0 * (0.6 / 3.0 + 1.2 / 1.5)]))
    fitted = {}
    for beta in (0.0, 2.0):
        pred = torch.zeros(4, requires_grad=True)
        opt = torch.optim.SGD([pred], lr=2.0)
        for _ in range(500):
            opt.zero_grad()
            _loss(pred.expand(4, 4), target, mask, scale, beta).backward()
            opt.step()
        fitted[beta] = pred.detach()
    assert fitted[0.0][3] == pytest.approx(0.3, abs=1e-4)  # the plain mean: a quarter of the turn
    assert fitted[2.0][3] == pytest.approx(1.2 * float(w[3]) / float(w.sum()), abs=1e-4)  # 0.6: half of it
    # No weight is the plain masked mean, and a masked frame counts for nothing either way.
    pred = torch.randn(2, 3, 4)
    target = torch.randn(2, 3, 4)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    plain = (((pred - target) / scale) ** 2).mean(-1)
    assert torch.allclose(_loss(pred, target, mask, scale), (plain * mask).sum() / 3)
    changed = target.clone()
    changed[0, 2] += 10.0
    assert torch.allclose(_loss(pred, target, mask, scale, 1.0), _loss(pred, changed, mask, scale, 1.0))


def test_steer_weight_trains_and_is_validated(dataset: Path, tmp_path: Path) -> None:
    summary = train(_cfg(dataset, tmp_path / "sw", epochs=1, steer_weight=1.5), progress=False, log=lambda _s: None)
    assert np.isfinite(summary["best_val_loss"])
    import json

    assert json.loads((tmp_path / "sw" / "train_config.json").read_text())["steer_weight"] == 1.5
    with pytest.raises(ValueError, match="steer_weight"):
        _cfg(dataset, tmp_path / "bad", steer_weight=-1.0)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "train",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "o"),
            "--steer-weight",
            "nan",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "steer_weight" in result.stderr


def test_init_encoder_trains_a_new_core_on_a_trained_encoder(dataset: Path, tmp_path: Path) -> None:
    # A 12-neuron CfC-NCP's encoder carries over to a wider (20-neuron) NCP and to an LSTM: the
    # encoder weights are the source's (lr 1e-9), the core is the new kind and size, and the result flies.
    quick = dict(epochs=1, max_steps_per_epoch=2, val_fraction=0.0)
    train(_cfg(dataset, tmp_path / "small", **quick), progress=False, log=lambda _s: None)
    source_path = str(tmp_path / "small" / "best.safetensors")
    source = load_policy(source_path)
    for name, model, options in (("wide", "cfc-ncp", {"units": 20}), ("lstm", "lstm", {"units": 16})):
        lines: list = []
        train(
            _cfg(
                dataset,
                tmp_path / name,
                model=model,
                core_options=options,
                init_encoder=source_path,
                lr=1e-9,
                feature_dim=4,
                **quick,
            ),
            progress=False,
            log=lines.append,
        )
        assert any(f"from {source_path} (a cfc-ncp controller); new {model} core" in line for line in lines)
        result = load_policy(tmp_path / name / "best.safetensors")
        # The source's encoder config wins over the training config's (feature_dim 4 asked, 8 kept).
        assert result.config.encoder == source.config.encoder and result.config.encoder.feature_dim == 8
        assert result.config.core == model and result.core.state_size == options["units"]
        for ours, theirs in zip(result.encoder.state_dict().values(), source.encoder.state_dict().values()):
            torch.testing.assert_close(ours, theirs)
        command, _ = result.step(
            torch.rand(1, 3, 24, 32),
            torch.tensor([1 / 15]),
            result.initial_state(1),
            goal=torch.tensor([[1.0, 0.0, 0.0, 20.0]]),
        )
        assert command.shape == (1, 4) and torch.isfinite(command).all()
    # Switching the input normalisation keeps the trained weights and records the new one.
    lines = []
    train(
        _cfg(
            dataset, tmp_path / "frame", init_encoder=source_path, input_norm="frame", augment_profile="strong", **quick
        ),
        progress=False,
        log=lines.append,
    )
    assert any("input normalisation fixed -> frame" in line for line in lines)
    assert load_policy(tmp_path / "frame" / "best.safetensors").config.encoder.input_norm == "frame"
    # ... and its floor, which the checkpoint records.
    lines = []
    train(
        _cfg(dataset, tmp_path / "floor", init_encoder=source_path, input_norm="frame", input_norm_floor=0.1, **quick),
        progress=False,
        log=lines.append,
    )
    assert any("input norm floor 0.02 -> 0.1" in line for line in lines)
    assert load_policy(tmp_path / "floor" / "best.safetensors").config.encoder.input_norm_floor == 0.1
    with pytest.raises(ValueError, match="exclude each other"):
        _cfg(dataset, tmp_path / "both", init=source_path, init_encoder=source_path)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lnn_nav.cli",
            "train",
            "--data",
            str(dataset),
            "--out",
            str(tmp_path / "o"),
            "--init-encoder",
            str(tmp_path / "missing.safetensors"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "missing.safetensors" in result.stderr


def test_checkpoints_name_their_data_by_identity_not_path(dataset: Path, tmp_path: Path) -> None:
    import shutil

    from lnn_nav.data.dataset import SequenceDataset
    from lnn_nav.models.checkpoint import read_checkpoint_info

    train(_cfg(dataset, tmp_path / "run", epochs=1, max_steps_per_epoch=1), progress=False, log=lambda _s: None)
    _, meta = read_checkpoint_info(tmp_path / "run" / "best.safetensors")
    (identity,) = meta["trained_on"]
    assert identity.startswith("ds@") and len(identity.split("@")[1]) == 16
    assert str(dataset.parent) not in identity  # no build-machine path
    copy = tmp_path / "elsewhere" / "ds"
    shutil.copytree(dataset, copy)
    assert SequenceDataset(copy).identity() == identity  # the same data wherever it lies
    with open(copy / "frames.npz", "ab") as fh:
        fh.write(b"\0")
    assert SequenceDataset(copy).identity() != identity  # any change to the content changes it
