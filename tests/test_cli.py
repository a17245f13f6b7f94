"""The `lnn-nav` command speaks one vocabulary, states defaults that are the configs' own, and says
what to install when an optional dependency is missing.

Parsers are built, never run, except where a command's `run` is the subject; then the work it
hands off to (training, DAgger) is replaced by a recorder of the config it was given.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lnn_nav import argtypes
from lnn_nav.cli import MODULE_COMMANDS, build_parser, main, missing_dependency_message
from lnn_nav.sim import kinds

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(only: str | None = None) -> dict[str, argparse.ArgumentParser]:
    parser = build_parser(only=only)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {option: action for action in parser._actions for option in action.option_strings}


# -- the light name modules are the tables' names -------------------------------------------------------


def test_the_simulator_names_are_the_presets_tables() -> None:
    from lnn_nav.sim import presets

    assert presets.WORLD_KINDS is kinds.WORLD_KINDS
    assert kinds.PRESET_NAMES == tuple(presets.CONDITION_PRESETS)
    assert kinds.COMBINATION_PRESET_NAMES == tuple(presets.COMBINATION_PRESETS)
    assert kinds.RANDOMIZATION_PROFILES == tuple(presets.RANDOMIZATION) == presets.RANDOMIZATION_PROFILES


def test_the_bag_format_names_are_the_writers() -> None:
    from lnn_nav.data import bag_writer, formats

    assert formats.STORAGES == bag_writer.STORAGES
    assert formats.COMPRESSIONS == bag_writer.COMPRESSIONS


# -- one vocabulary ---------------------------------------------------------------------------------------


def test_every_command_names_world_kinds_presets_seeds_and_checkpoints_alike() -> None:
    from lnn_nav.train.cli_train import MODEL_KINDS

    commands = _subparsers()
    assert set(commands) == {name for name, _ in MODULE_COMMANDS}
    for name, parser in commands.items():
        options = _options(parser)
        # Another spelling of a word the vocabulary already has.
        assert not {"--worlds", "--seeds", "--presets", "--kind"} & set(options), name
        world = options.get("--world")
        if world is not None:
            assert tuple(world.choices) == kinds.WORLD_KINDS, name
        preset = options.get("--preset")
        if preset is not None:
            assert preset.metavar == "NAME", name
        # --seed is a world seed; the training's own randomness is --train-seed.
        seed = options.get("--seed")
        if seed is not None:
            assert "world seed" in seed.help, name
        # --model is a checkpoint (or `expert`), never a kind of core.
        model = options.get("--model")
        if model is not None:
            assert model.choices is None, name
        randomize = options.get("--randomize")
        if randomize is not None:
            assert tuple(randomize.choices) == kinds.RANDOMIZATION_PROFILES, name
        if "--ood" in options:  # the older name of fly's --preset, kept as an alias
            assert name == "fly" and options["--ood"] is preset
    train = _options(commands["train"])
    assert tuple(train["--core"].choices) == MODEL_KINDS and "--train-seed" in train
    assert "--model" not in train and "--seed" not in train


# -- defaults live in the configs; the help states them ------------------------------------------------


def _field_defaults(config: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING}


@pytest.mark.parametrize("command", ["train", "dagger"])
def test_options_default_to_the_configs_own_and_the_help_states_it(command: str) -> None:
    if command == "train":
        from lnn_nav.train import cli_train as module
        from lnn_nav.train.bc import TrainConfig as config
    else:
        from lnn_nav.train import cli_dagger as module  # type: ignore[no-redef]
        from lnn_nav.train.dagger import DaggerConfig as config  # type: ignore[assignment]
    defaults = _field_defaults(config)
    by_dest = {action.dest: action for action in _subparsers(command)[command]._actions}
    stated = 0
    for dest, field in module.CONFIG_FIELDS.items():
        action = by_dest[dest]
        assert action.default is None, f"--{dest}: the default belongs to {config.__name__}.{field}"
        value = defaults.get(field)
        if value is not None:
            assert f"default: {value}" in action.help, f"--{dest} states another default than {value!r}"
            stated += 1
    assert stated >= 5
    if command == "dagger":
        assert f"(default: {defaults['episodes']})" in by_dest["episodes"].help


def test_train_passes_only_the_options_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from lnn_nav.train import bc

    seen: list[bc.TrainConfig] = []

    def fake_train(cfg: bc.TrainConfig, progress: bool = True) -> dict[str, Any]:
        seen.append(cfg)
        return {"best_val_loss": 0.0, "epochs": 0, "seconds": 0.0, "best": "x"}

    monkeypatch.setattr(bc, "train", fake_train)
    data, out = str(tmp_path / "ds"), str(tmp_path / "run")
    assert main(["train", "--data", data, "--out", out]) == 0
    assert seen[-1] == bc.TrainConfig(data=[data], out=out)
    argv = ["--core", "lstm", "--train-seed", "3", "--no-augment", "--no-goal", "--use-imu", "--epochs", "2"]
    assert main(["train", "--data", data, "--out", out, *argv, "--core-options", '{"units": 8}']) == 0
    cfg = seen[-1]
    assert (cfg.model, cfg.seed, cfg.augment, cfg.use_goal, cfg.use_imu, cfg.epochs) == (
        "lstm",
        3,
        False,
        False,
        True,
        2,
    )
    assert cfg.core_options == {"units": 8}


def test_dagger_passes_only_the_options_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lnn_nav.train import dagger

    seen: list[dagger.DaggerConfig] = []

    def fake_run(cfg: dagger.DaggerConfig, progress: bool = True) -> dict[str, Any]:
        seen.append(cfg)
        return {"final": "x"}

    monkeypatch.setattr(dagger, "run_dagger", fake_run)
    need = ["dagger", "--init", "c.safetensors", "--data", "ds", "--out", str(tmp_path)]
    assert main(need) == 0
    assert seen[-1] == dagger.DaggerConfig(init="c.safetensors", data=["ds"], out=str(tmp_path))
    assert main([*need, "--episodes", "100", "40"]) == 0
    assert seen[-1].episodes == {"forest": 100, "urban": 40} and seen[-1].worlds == ["forest", "urban"]
    assert main([*need, "--world", "urban", "--episodes", "5", "--randomize", "wide"]) == 0
    assert (seen[-1].worlds, seen[-1].episodes, seen[-1].randomization) == (["urban"], 5, "wide")
    assert main([*need, "--world", "urban", "--episodes", "5", "6"]) == 2
    assert "one per --world entry" in capsys.readouterr().err


# -- argument types ---------------------------------------------------------------------------------------


def test_number_types_refuse_what_they_name() -> None:
    assert argtypes.positive_int("3") == 3 and argtypes.positive_float("0.5") == 0.5
    assert argtypes.non_negative_float("0") == 0.0 and argtypes.byte_size("2K") == 2048
    for kind, text in (
        (argtypes.positive_int, "0"),
        (argtypes.positive_float, "0"),
        (argtypes.positive_float, "nan"),
        (argtypes.non_negative_float, "-1"),
        (argtypes.non_negative_float, "nan"),
        (argtypes.byte_size, "-1"),
        (argtypes.byte_size, "lots"),
    ):
        with pytest.raises(argparse.ArgumentTypeError):
            kind(text)


def test_a_bad_number_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--threads", "0"])
    assert exc.value.code == 2 and "expected a positive integer (at least 1), got 0" in capsys.readouterr().err


# -- a missing optional dependency ----------------------------------------------------------------------

#: Every optional dependency (setup.py's extras) and ROS 2's client library and messages.
OPTIONAL = ("gymnasium", "warp", "scipy", "rosbags", "matplotlib", "ncps", "rclpy", "launch", "launch_ros")

#: Runs `lnn_nav.cli.main` for each argv in sys.argv[2:] (JSON), in an interpreter where the modules
#: named in sys.argv[1] cannot be imported, as if not installed; prints each exit code.
WITHOUT = r"""
import json, sys

BLOCKED = set(sys.argv[1].split(","))


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in BLOCKED or (top.endswith("_msgs") and "msgs" in BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
from lnn_nav.cli import main

for argv in json.loads(sys.argv[2]):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    print("EXIT", code, file=sys.stderr, flush=True)
"""


def _without(blocked: tuple[str, ...], *argvs: list[str]) -> subprocess.CompletedProcess[str]:
    import json

    return subprocess.run(
        [sys.executable, "-c", WITHOUT, ",".join(blocked), json.dumps(list(argvs))],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def _exits(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line.split()[1] for line in result.stderr.splitlines() if line.startswith("EXIT ")]


def test_help_works_without_any_optional_dependency() -> None:
    argvs = [["--help"]] + [[name, "--help"] for name, _ in MODULE_COMMANDS]
    result = _without((*OPTIONAL, "msgs"), *argvs)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert _exits(result) == ["0"] * len(argvs), result.stderr
    assert result.stdout.count("usage: lnn-nav") == len(argvs)


def test_a_missing_optional_dependency_says_what_to_install(tmp_path: Path) -> None:
    result = _without(
        ("rosbags", "warp"),
        ["dataset", str(tmp_path / "bags"), "--out", str(tmp_path / "ds")],
        ["sim", "--no-pictures", "--out", str(tmp_path / "sim")],
    )
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert _exits(result) == ["2", "2"]
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert lines == [
        "lnn-nav dataset: error: this command needs rosbags, which is not installed: pip install 'lnn_nav[bags]'",
        "lnn-nav sim: error: this command needs warp (the warp-lang package), which is not installed: "
        "pip install 'lnn_nav[sim]'",
    ]
    assert not (tmp_path / "ds").exists()


def test_a_missing_ros_install_names_ros_and_anything_else_is_raised(tmp_path: Path) -> None:
    result = _without(("rclpy",), ["record", "-a", "-o", str(tmp_path / "bag")])
    assert _exits(result) == ["2"] and "Traceback" not in result.stderr, result.stderr
    assert "lnn-nav record: error: this command needs rclpy" in result.stderr and "ROS 2 Jazzy" in result.stderr
    # torch is no optional dependency: a missing one is a broken install, shown as it is.
    result = _without(("torch",), ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")])
    assert result.returncode == 1 and "ModuleNotFoundError: No module named 'torch'" in result.stderr


@pytest.mark.parametrize(
    "module, says",
    [
        ("warp", "pip install 'lnn_nav[sim]'"),
        ("scipy.ndimage", "needs scipy,"),
        ("matplotlib.pyplot", "pip install 'lnn_nav[plot]'"),
        ("ncps.torch", "pip install 'lnn_nav[bench]'"),
        ("sensor_msgs.msg", "ros-jazzy-* wheels"),
        ("launch_ros.actions", "ROS 2 Jazzy install in this shell"),
        ("px4_msgs.msg", "scripts/ros_extras.sh"),
        ("yaml", None),
        ("torch", None),
    ],
)
def test_the_message_names_the_extra(module: str, says: str | None) -> None:
    message = missing_dependency_message("eval", module)
    if says is None:
        assert message is None
    else:
        assert message is not None and message.startswith("lnn-nav eval: error: ") and says in message
