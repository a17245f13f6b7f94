"""scripts/reproduce.sh issues commands the real `lnn-nav` parser accepts, chaining the right checkpoints.

The full chain takes hours (README, "Training"); here `lnn-nav` is replaced by a recorder that parses
every command with the real argument parser and creates the files the real command would leave, so a
renamed option or a broken hand-over between stages fails in seconds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

RECORDER = r"""
import json, sys
from pathlib import Path
from lnn_nav.cli import build_parser

argv = sys.argv[1:]
args = build_parser().parse_args(argv)  # exits 2 on an option the real CLI does not know
with open(sys.argv[0] + ".log", "a") as log:
    log.write(json.dumps(argv) + "\n")
if args.command == "train":
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "best.safetensors").write_text("train " + " ".join(argv))
elif args.command == "dagger":
    run = Path(args.out) / f"round_{args.rounds}" / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "best.safetensors").write_text("dagger from " + args.init)
"""


def _run(tmp_path: Path, **env: str) -> list[list[str]]:
    fake = tmp_path / "lnn_nav_recorder.py"
    fake.write_text(RECORDER)
    lnn = tmp_path / "lnn"
    lnn.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" "$@"\n')
    lnn.chmod(0o755)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "reproduce.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "LNN": str(lnn), "OUT": str(tmp_path / "out"), **env},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in (tmp_path / "lnn_nav_recorder.py.log").read_text().splitlines()]


OOD_PRESETS = ["fall", "winter", "dusk", "fog", "dense_forest", "gusty_wind", "camera_noise"]


def _opt(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_reproduce_chain_parses_and_hands_checkpoints_on(tmp_path: Path) -> None:
    calls = _run(tmp_path)
    commands = [c[0] for c in calls]
    assert commands == (["collect"] * 2 + ["dataset"]) * 3 + ["dataset", "collect", "collect", "dataset"] + [
        "collect"
    ] * 3 + ["dataset"] * 2 + ["train", "dagger", "train", "train", "train", "train", "eval"] + ["train"] * 5 + ["eval"]
    collects = [c for c in calls if c[0] == "collect"]
    assert [_opt(c, "--expert-speed") for c in collects] == ["3.0", "3.0"] + ["2.0"] * 9
    assert [_opt(c, "--expert-margin") for c in collects] == ["0.6"] * 4 + ["0.8"] * 7
    # Stages 1-2 keep the light clearance cost they were flown with; stages 3-5 take each world's
    # demonstrating expert (in urban the street-centred plan).
    light = ["--expert-clearance", "1.0", "0.8"]
    assert [" ".join(light) in " ".join(c) for c in collects] == [True] * 4 + [False] * 7
    # Only stage 5 widens the randomisation; the earlier stages keep the profile they were recorded with.
    assert [_opt(c, "--randomize") if "--randomize" in c else "narrow" for c in collects] == ["narrow"] * 8 + [
        "wide"
    ] * 3
    out = tmp_path / "out"
    # Stage 4's data: the stage-3 forest bags alone, and two sets of urban worlds flown with the heading 6 m ahead.
    forest_ds, urban_a, urban_b, urban_ds = calls[9:13]
    assert forest_ds[1:2] == [str(out / "demos_2ms_m08_street" / "forest")]
    assert [_opt(c, "--world") for c in (urban_a, urban_b)] == ["urban", "urban"]
    assert [_opt(c, "--first-seed") for c in (urban_a, urban_b)] == ["200000", "200160"]
    assert all(json.loads(_opt(c, "--expert-options")) == {"yaw_lookahead": 6.0} for c in (urban_a, urban_b))
    assert urban_ds[1:3] == [_opt(urban_a, "--out"), _opt(urban_b, "--out")]
    # CfC-NCP: BC -> DAgger from the BC weights -> fine-tune from the last DAgger round -> fine-tune on the
    # wide-margin demonstrations -> a new, wider core on that encoder -> shipped file evaluated.
    wide_forest, wide_a, wide_b, wide_forest_ds, wide_urban_ds = calls[13:18]
    assert _opt(wide_forest, "--world") == "forest" and "--first-seed" not in wide_forest  # the stage-3 forest seeds
    assert [_opt(c, "--first-seed") for c in (wide_a, wide_b)] == ["200000", "200160"]
    assert all(json.loads(_opt(c, "--expert-options")) == {"yaw_lookahead": 6.0} for c in (wide_a, wide_b))
    assert wide_urban_ds[1:3] == [_opt(wide_a, "--out"), _opt(wide_b, "--out")]
    bc, dagger, ft, ft_m08, new_core, robust, ev = calls[18:25]
    assert _opt(dagger, "--init") == _opt(bc, "--out") + "/best.safetensors"
    assert _opt(ft, "--init") == _opt(dagger, "--out") + "/round_2/run/best.safetensors"
    assert _opt(ft_m08, "--init") == _opt(ft, "--out") + "/best.safetensors"
    assert _opt(bc, "--data") == str(out / "ds" / "demos_3ms") and _opt(ft, "--data") == str(out / "ds" / "demos_2ms")
    assert _opt(ft_m08, "--data") == str(out / "ds" / "demos_2ms_m08_street")
    assert json.loads(_opt(dagger, "--expert-options")) == {"clearance_weight": 1.0, "clearance_scale": 0.8}
    assert _opt(new_core, "--init-encoder") == _opt(ft_m08, "--out") + "/best.safetensors"
    assert "--init" not in new_core and json.loads(_opt(new_core, "--core-options")) == {"units": 48}
    data = new_core[new_core.index("--data") + 1 : new_core.index("--data") + 3]
    assert data == [_opt(forest_ds, "--out"), _opt(urban_ds, "--out")]
    # Stage 5: a new core on the stage-4 encoder, on the wide-randomisation data, with the mixed augmentation
    # (the strong photometric changes on half the sequences).
    assert _opt(robust, "--init-encoder") == _opt(new_core, "--out") + "/best.safetensors"
    assert robust[robust.index("--data") + 1 : robust.index("--data") + 3] == [
        _opt(wide_forest_ds, "--out"),
        _opt(wide_urban_ds, "--out"),
    ]
    # The shipped CfC-NCP is training seed 1 (chosen over seed 0 on calibration worlds).
    assert _opt(robust, "--augment") == "mixed" and _opt(robust, "--train-seed") == "1"
    assert json.loads(_opt(robust, "--core-options")) == {"units": 48}
    assert _opt(ev, "--model") == str(out / "models" / "cfc_ncp.safetensors")
    assert (out / "models" / "cfc_ncp.safetensors").read_text() == "train " + " ".join(robust)
    # The LSTM baseline: BC on the same data, fine-tuned the same two ways, no DAgger, then its own new core
    # (default size) on its own encoder, on the same data.
    lstm_bc, lstm_ft, lstm_m08, lstm_new, lstm_robust = calls[25:30]
    assert _opt(lstm_bc, "--core") == "lstm" and _opt(lstm_ft, "--init") == _opt(lstm_bc, "--out") + "/best.safetensors"
    assert _opt(lstm_m08, "--init") == _opt(lstm_ft, "--out") + "/best.safetensors"
    assert _opt(lstm_new, "--init-encoder") == _opt(lstm_m08, "--out") + "/best.safetensors"
    assert json.loads(_opt(lstm_new, "--core-options")) == {} and _opt(lstm_new, "--core") == "lstm"
    assert lstm_new[lstm_new.index("--data") + 1 : lstm_new.index("--data") + 3] == data
    assert _opt(lstm_robust, "--init-encoder") == _opt(lstm_new, "--out") + "/best.safetensors"
    # Stages 3-4 weight the steering frames (the shipped recipe); stages 1-2 train on the plain loss.
    assert [_opt(c, "--steer-weight") for c in (ft_m08, new_core, robust, lstm_m08, lstm_new, lstm_robust)] == ["6"] * 6
    assert all("--steer-weight" not in c for c in (bc, ft, lstm_bc, lstm_ft))


def test_reproduce_without_stage4_ships_stage3(tmp_path: Path) -> None:
    calls = _run(tmp_path, STAGE4="0", MODELS="lstm")
    assert [c[0] for c in calls] == (["collect"] * 2 + ["dataset"]) * 3 + ["train", "train", "train", "eval"]


def test_reproduce_stage5_trains_once_per_training_seed_and_ships_the_first(tmp_path: Path) -> None:
    calls = _run(tmp_path, MODELS="cnn", TRAIN_SEEDS="0 1 2")
    robust = [c for c in calls if c[0] == "train" and "--augment" in c]
    assert [_opt(c, "--train-seed") for c in robust] == ["0", "1", "2"]
    assert len({_opt(c, "--init-encoder") for c in robust}) == 1  # every seed on the same stage-4 encoder
    out = tmp_path / "out" / "models"
    assert sorted(p.name for p in (out / "seeds").iterdir()) == [f"cnn_s{k}.safetensors" for k in range(3)]
    assert (out / "cnn.safetensors").read_text() == "train " + " ".join(robust[0])
    # Each training seed is flown held out, in distribution and in the 13 OOD cells, right after its training
    # (so an interrupted comparison keeps what it flew); the shipped first seed is not flown a second time.
    after_stage5 = calls[calls.index(robust[0]) :]
    assert [c[0] for c in after_stage5] == ["train", "eval", "eval"] * 3
    evals = [c for c in calls if c[0] == "eval"]
    seeds = [str(out / "seeds" / f"cnn_s{k}.safetensors") for k in range(3)]
    assert [_opt(c, "--model") for c in evals] == [ckpt for ckpt in seeds for _ in ("in", "ood")]
    assert all("--calibration" not in c and "--seed-offset" not in c for c in evals)  # held-out seeds 1000+
    assert all("--no-tracks" in c for c in evals)  # committed as they are (models/eval/seeds/)
    ood = evals[1::2]
    assert all(c[c.index("--preset") + 1 : c.index("--preset") + 8] == OOD_PRESETS for c in ood)
    assert {_opt(c, "--episodes") for c in ood} == {"25"} and {_opt(c, "--episodes") for c in evals[::2]} == {"100"}
    assert _opt(ood[2], "--out") == str(tmp_path / "out" / "eval" / "seeds" / "cnn_s2_ood.json")
    (tmp_path / "off").mkdir()
    calls = _run(tmp_path / "off", MODELS="cnn", STAGE5="0")
    assert not any("--randomize" in c or "--augment" in c for c in calls)


def test_reproduce_stage4_trains_the_ltc_core_at_its_own_learning_rate(tmp_path: Path) -> None:
    # At 1e-3 the LTC's fresh core was still far from the others' validation loss after 10 epochs
    # (0.0248 against 0.015-0.019) and flew 38% / 24%; at 5e-3 it reached 0.0199 (README).
    calls = _run(tmp_path, MODELS="ltc lstm")
    new_cores = [c for c in calls if c[0] == "train" and "--init-encoder" in c and "--augment" not in c]
    assert [(_opt(c, "--core"), _opt(c, "--lr")) for c in new_cores] == [("ltc", "5e-3"), ("lstm", "1e-3")]
    assert json.loads(_opt(new_cores[0], "--core-options")) == {}
    (tmp_path / "again").mkdir()
    calls = _run(tmp_path / "again", MODELS="ltc", STAGE4_LTC_LR="2e-3")
    assert [_opt(c, "--lr") for c in calls if c[0] == "train" and "--init-encoder" in c] == ["2e-3", "2e-3"]


def test_reproduce_stage1_only(tmp_path: Path) -> None:
    calls = _run(tmp_path, STAGE2="0", STAGE3="0", MODELS="cfc-ncp", DAGGER_ROUNDS="0")
    assert [c[0] for c in calls] == ["collect", "collect", "dataset", "train", "eval"]


def test_reproduce_at_another_size_and_camera(tmp_path: Path) -> None:
    # Every demonstration flies the camera asked for and every dataset stores the size asked for;
    # by default 90 degrees and 64x48, what the shipped controllers were made with.
    (tmp_path / "default").mkdir()
    (tmp_path / "wide").mkdir()
    default = _run(tmp_path / "default", STAGE2="0", STAGE3="0", MODELS="cfc-ncp", DAGGER_ROUNDS="0")
    assert [_opt(c, "--camera-hfov") for c in default if c[0] == "collect"] == ["90", "90"]
    assert [c[c.index("--size") + 1 : c.index("--size") + 3] for c in default if c[0] == "dataset"] == [["64", "48"]]
    calls = _run(tmp_path / "wide", SIZE="128 96", HFOV="120", MODELS="cfc-ncp", DAGGER_ROUNDS="0")
    collects, datasets = [c for c in calls if c[0] == "collect"], [c for c in calls if c[0] == "dataset"]
    assert len(collects) == 11 and {_opt(c, "--camera-hfov") for c in collects} == {"120"}
    assert len(datasets) == 7 and all(
        c[c.index("--size") + 1 : c.index("--size") + 3] == ["128", "96"] for c in datasets
    )


def test_reproduce_stage5_alone_from_stage4_checkpoints(tmp_path: Path) -> None:
    # STAGE4_FROM: no stage 1-4 collection or training; stage 5's data, then each core's stage 5 on the
    # encoder of its own stage-4 checkpoint (what scripts/stage4_checkpoints.sh takes from the history).
    stage4 = tmp_path / "stage4"
    stage4.mkdir()
    for name in ("cfc_ncp", "lstm"):
        (stage4 / f"{name}.safetensors").write_text(name)
    calls = _run(tmp_path, STAGE4_FROM=str(stage4), MODELS="cfc-ncp lstm", TRAIN_SEEDS="0 1", STAGE5_AUGMENT="mixed")
    assert [c[0] for c in calls] == ["collect"] * 3 + ["dataset"] * 2 + ["train", "eval", "eval"] * 4
    assert all(_opt(c, "--randomize") == "wide" for c in calls if c[0] == "collect")
    trains = [c for c in calls if c[0] == "train"]
    assert [(_opt(c, "--core"), _opt(c, "--train-seed")) for c in trains] == [
        ("cfc-ncp", "0"),
        ("cfc-ncp", "1"),
        ("lstm", "0"),
        ("lstm", "1"),
    ]
    assert [_opt(c, "--init-encoder") for c in trains] == [str(stage4 / "cfc_ncp.safetensors")] * 2 + [
        str(stage4 / "lstm.safetensors")
    ] * 2
    assert [json.loads(_opt(c, "--core-options")) for c in trains] == [{"units": 48}] * 2 + [{}] * 2
    assert {_opt(c, "--augment") for c in trains} == {"mixed"}
    urban = [c for c in calls if c[0] == "collect" and _opt(c, "--world") == "urban"]
    # The shipped recipe: stronger lateral recovery in the urban demonstrations, in folders of their own.
    assert [_opt(c, "--noise") for c in urban] == ["1.0", "1.0"]
    assert all("demos_wide_noise1.0" in _opt(c, "--out") for c in urban)
    data = trains[0][trains[0].index("--data") + 1 : trains[0].index("--data") + 3]
    assert data[0].endswith("ds/wide_forest") and data[1].endswith("ds/wide_urban_noise1.0")
    # STAGE5_URBAN_NOISE=0.5: collect's default (the recipe before), in the folders it always had.
    (tmp_path / "noise").mkdir()
    before = {"STAGE4_FROM": str(stage4), "MODELS": "cfc-ncp", "TRAIN_SEEDS": "0", "STAGE5_URBAN_NOISE": "0.5"}
    calls = _run(tmp_path / "noise", **before)
    urban = [c for c in calls if c[0] == "collect" and _opt(c, "--world") == "urban"]
    assert [_opt(c, "--noise") for c in urban] == ["0.5", "0.5"]
    assert all("/demos_wide/" in _opt(c, "--out") for c in urban)
    train = next(c for c in calls if c[0] == "train")
    assert train[train.index("--data") + 2].endswith("ds/wide_urban")
    # COMPARE=1: a single seed of a comparison (seed by seed, core by core) is flown as its own run too.
    (tmp_path / "one").mkdir()
    calls = _run(tmp_path / "one", STAGE4_FROM=str(stage4), MODELS="lstm", TRAIN_SEEDS="2", COMPARE="1")
    assert [c[0] for c in calls][-3:] == ["train", "eval", "eval"]
    assert {_opt(c, "--model") for c in calls if c[0] == "eval"} == {
        str(tmp_path / "one" / "out" / "models" / "seeds" / "lstm_s2.safetensors")
    }
    # A comparison continued on another machine: runs whose results were copied in are neither trained nor flown.
    (tmp_path / "again").mkdir()
    seeds = tmp_path / "again" / "out" / "eval" / "seeds"
    seeds.mkdir(parents=True)
    for name in ("cfc_ncp_s0", "cfc_ncp_s0_ood", "lstm_s1"):  # lstm_s1 lacks its OOD flight: it runs again
        (seeds / f"{name}.json").write_text("{}")
    calls = _run(tmp_path / "again", STAGE4_FROM=str(stage4), MODELS="cfc-ncp lstm", TRAIN_SEEDS="0 1")
    runs = [(_opt(c, "--core"), _opt(c, "--train-seed")) for c in calls if c[0] == "train"]
    assert runs == [("cfc-ncp", "1"), ("lstm", "0"), ("lstm", "1")]
    assert [c[0] for c in calls][5:] == ["train", "eval", "eval", "train", "eval", "eval", "train", "eval"]
    # One OUT holds one DART noise: its stage-5 runs are named by core and seed only and would be reused.
    for out, stamp in ((tmp_path / "noise" / "out", None), (tmp_path / "old", "robust")):
        if stamp:  # an OUT from before the stamp: its stage-5 runs were made with 0.5
            (out / "runs" / "lstm" / "robust_s0").mkdir(parents=True)
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "reproduce.sh")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "LNN": "true", "OUT": str(out), "STAGE4_FROM": str(stage4), "MODELS": "lstm"},
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "made with STAGE5_URBAN_NOISE=0.5, not 1.0: use another OUT" in proc.stderr
    # A core without its stage-4 checkpoint stops the run with the command that makes it.
    (tmp_path / "missing").mkdir()
    env = {**os.environ, "LNN": "true"}
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "reproduce.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**env, "OUT": str(tmp_path / "missing"), "STAGE4_FROM": str(stage4), "MODELS": "cnn"},
        timeout=60,
    )
    assert proc.returncode == 2 and "scripts/stage4_checkpoints.sh" in proc.stderr, proc.stderr


def test_stage4_checkpoints_come_from_the_history_as_each_cores_stage4_controller(tmp_path: Path) -> None:
    from lnn_nav.models.checkpoint import read_checkpoint_info

    if subprocess.run(["git", "cat-file", "-e", "7f34ac1:models/cfc_ncp.safetensors"], cwd=ROOT).returncode != 0:
        pytest.skip("this clone lacks the history that holds the stage-4 checkpoints (a shallow clone)")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "stage4_checkpoints.sh"), str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    cores = {"cfc_ncp": "cfc-ncp", "cfc": "cfc", "ltc": "ltc", "lstm": "lstm", "gru": "gru", "cnn": "cnn"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.safetensors" for n in cores)
    for name, core in cores.items():
        config, metadata = read_checkpoint_info(tmp_path / f"{name}.safetensors")
        assert config.core == core
        # Stage 4 trained on the stage-3 forest set and the heading-6-m urban demonstrations, not stage 5's
        # wide-randomisation sets.
        assert not any("wide" in source for source in metadata["trained_on"]), metadata
    config, _ = read_checkpoint_info(tmp_path / "cfc_ncp.safetensors")
    assert config.core_options["units"] == 48


def test_reproduce_refuses_an_unknown_core_before_any_work(tmp_path: Path) -> None:
    # cfc_ncp (the file name) for cfc-ncp (the core): a clear error before the first collection, not after.
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "reproduce.sh")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "LNN": "false", "OUT": str(tmp_path / "out"), "MODELS": "lstm cfc_ncp"},
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "unknown core 'cfc_ncp'" in proc.stderr
    assert not (tmp_path / "out").exists()
