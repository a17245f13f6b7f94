"""DAgger (Ross, Gordon and Bagnell 2011): the learner flies, the expert labels, aggregate, retrain.

Round ``r``: the current controller flies fresh training worlds in the
embedded simulator while the privileged expert labels every visited state
(the command it would give there, slew-limited from its own previous
label as in a demonstration); those flights are written as rosbag2 like any recording, turned
into a dataset, and the controller is retrained on everything so far,
starting from its previous weights. Behaviour cloning alone only sees the
expert's own states; after a few rounds the data covers the states the
learner actually reaches, which is where cloned policies fail.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lnn_nav.data.dataset import DatasetConfig, build_dataset, find_bags
from lnn_nav.rollouts.flights import FlightJob, camera_hfov_for, fly_episodes, summarize
from lnn_nav.sim.kinds import WORLD_KINDS
from lnn_nav.sim.presets import check_training_seeds

#: DAgger worlds come from here (collect uses 100000+ and 200000+): never the evaluation seeds.
DAGGER_SEED_BASE = {"forest": 300_000, "urban": 400_000}


@dataclass
class DaggerConfig:
    init: str  # checkpoint of round 0 (behaviour cloning)
    data: list[str]  # dataset folders of the demonstrations
    out: str
    rounds: int = 2
    episodes: Any = 40  # per world kind and round: one number, or {kind: number}
    worlds: list[str] = field(default_factory=lambda: list(WORLD_KINDS))
    epochs: int = 4
    workers: int = 2
    envs: int = 16
    train_overrides: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields (lr, batch_size, ...)
    world_overrides: dict[str, Any] = field(default_factory=dict)  # make_world options (tests: small worlds)
    # ExpertConfig fields of the labelling expert, on top of the demonstrating expert's
    # of each world kind (demo_expert), e.g. {"yaw_deadband": 0.15}; a world kind's key holds
    # its own, e.g. {"urban": {"yaw_lookahead": 6.0}} as its demonstrations were flown.
    expert_overrides: dict[str, Any] = field(default_factory=dict)
    # The lnn_nav.sim.presets.RANDOMIZATION profile the roll-outs' conditions are drawn from: the
    # learner should visit the states of the conditions its demonstrations were flown in.
    randomization: str = "narrow"

    def __post_init__(self) -> None:
        from lnn_nav.sim.expert import ExpertConfig
        from lnn_nav.sim.presets import RANDOMIZATION_PROFILES

        if self.randomization not in RANDOMIZATION_PROFILES:
            raise ValueError(
                f"randomization must be one of {', '.join(RANDOMIZATION_PROFILES)}, got {self.randomization!r}"
            )

        try:
            for kind in self.worlds:
                ExpertConfig(**self.labelling_expert(kind))
        except TypeError as err:  # an unknown field
            raise ValueError(f"expert options: {err}") from None

    def labelling_expert(self, kind: str) -> dict[str, Any]:
        """The demonstrating expert of ``kind``, the shared overrides, then ``kind``'s own ones."""
        from lnn_nav.sim.expert import demo_expert

        shared = {k: v for k, v in self.expert_overrides.items() if k not in DAGGER_SEED_BASE}
        own = self.expert_overrides.get(kind, {})
        if not isinstance(own, dict):
            raise ValueError(f"expert options for {kind} must be an object of ExpertConfig fields, got {own!r}")
        return {**demo_expert(kind), **shared, **own}


def run_dagger(cfg: DaggerConfig, log: Callable[[str], None] = print, progress: bool = True) -> dict[str, Any]:
    """Run ``cfg.rounds`` rounds; returns per-round learner success on its roll-outs and the final checkpoint."""
    from tqdm import tqdm

    from lnn_nav.models.checkpoint import read_checkpoint_info
    from lnn_nav.train.bc import TrainConfig, train

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    policy_config, _ = read_checkpoint_info(cfg.init)
    current = cfg.init
    datasets = list(cfg.data)
    height, width = policy_config.encoder.height, policy_config.encoder.width
    rounds: list[dict[str, Any]] = []
    for r in range(1, cfg.rounds + 1):
        started = time.perf_counter()
        round_dir = out / f"round_{r}"
        outcome: dict[str, dict[str, int]] = {}
        for kind in cfg.worlds:
            first = DAGGER_SEED_BASE[kind] + 10_000 * r
            count = cfg.episodes[kind] if isinstance(cfg.episodes, dict) else int(cfg.episodes)
            seeds = list(range(first, first + count))
            check_training_seeds(seeds)
            bar = tqdm(total=len(seeds), desc=f"round {r} roll-outs {kind}", unit="episode", disable=not progress)
            job = FlightJob(
                kind=kind,
                seeds=seeds,
                out_dir=str(round_dir / "bags" / kind),
                learner=current,
                envs=cfg.envs,
                rng_seed=first,
                name_suffix=f"_r{r}",
                world_overrides=dict(cfg.world_overrides),
                expert=cfg.labelling_expert(kind),
                randomization=cfg.randomization,
                camera_hfov=camera_hfov_for(current)[0],
            )  # the camera it was trained with
            results = fly_episodes(job, workers=cfg.workers, on_result=lambda _r: bar.update(1))  # noqa: B023 -- called within this iteration
            bar.close()
            _, frames, counts = summarize(results)
            outcome[kind] = counts
            log(
                f"round {r}: learner on {len(seeds)} {kind} training worlds: "
                f"{', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}; {frames} labelled frames"
            )
        ds = round_dir / "dataset"
        if not (ds / "meta.json").is_file():
            bags = find_bags([round_dir / "bags" / k for k in cfg.worlds if (round_dir / "bags" / k).is_dir()])
            build_dataset(bags, ds, DatasetConfig(height=height, width=width))
        datasets.append(str(ds))
        train_cfg = TrainConfig(
            data=list(datasets),
            out=str(round_dir / "run"),
            model=policy_config.core,
            core_options=dict(policy_config.core_options),
            epochs=cfg.epochs,
            use_goal=policy_config.use_goal,
            use_imu=policy_config.use_imu,
            command_scale=policy_config.command_scale,
            feature_dim=policy_config.encoder.feature_dim,
            normalization=policy_config.encoder.normalization,
            init=current,
            warmup_steps=20,
        )
        if cfg.train_overrides:
            train_cfg = replace(train_cfg, **cfg.train_overrides)
        summary = train(train_cfg, progress=progress, log=log)
        current = summary["best"]
        rounds.append(
            {
                "round": r,
                "rollout_outcomes": outcome,
                "checkpoint": current,
                "val_loss": summary["best_val_loss"],
                "seconds": time.perf_counter() - started,
            }
        )
        (out / "dagger.json").write_text(json.dumps({"config": asdict(cfg), "rounds": rounds}, indent=1))
    return {"rounds": rounds, "final": current}
