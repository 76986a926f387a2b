"""Ray Train wrapper: runs :func:`training.phase.run_phase` on ``TorchTrainer`` workers.

The only module of ``training`` that imports Ray. Each phase is one Ray Train run named after
the phase under ``<MODEL_DIR>/.work/ray``; running it again with the same name and storage
path makes Ray Train hand the latest checkpoint back to the workers
(``ray.train.get_checkpoint()``), which is how ``jobrec train --resume`` continues.
Checkpoints are Hugging Face model directories plus ``train_state.ckpt`` (optimizer, scheduler,
epoch, early-stopping state). On a multi-node cluster ``storage_path`` must be shared storage.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import ray
import ray.train
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from training.config import TrainConfig
from training.phase import HISTORY, DistributedMixin, PhaseSpec, run_phase


class RayContext(DistributedMixin):
    """:class:`training.train.RunContext` for one Ray Train worker."""

    def __init__(self) -> None:
        tc = ray.train.get_context()
        self.rank = tc.get_world_rank()
        self.world_size = tc.get_world_size()
        self.device = ray.train.torch.get_device()
        self._ckpt_tmp: tempfile.TemporaryDirectory | None = None

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return ray.train.torch.prepare_model(model)

    def latest_checkpoint(self) -> Path | None:
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            return None
        # Copy locally: the checkpoint may live on remote storage.
        self._ckpt_tmp = tempfile.TemporaryDirectory(prefix="wbert-resume-")
        return Path(ckpt.to_directory(self._ckpt_tmp.name))

    def report(self, metrics: dict, checkpoint_dir: Path | None) -> None:
        ckpt = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(
            {k: v for k, v in metrics.items() if isinstance(v, int | float)}, checkpoint=ckpt
        )


PROGRESS_LOG = "progress.log"  # one line per finished epoch, appended by rank 0


def _train_loop(config: dict) -> None:
    """``train_loop_per_worker``: fetch the shared arrays, run the phase."""
    spec: PhaseSpec = config["spec"]
    arrays = ray.get(config["arrays_ref"])
    progress_log = Path(spec.phase_dir) / PROGRESS_LOG

    def progress(message: str) -> None:
        # rank 0 only (run_phase says nothing elsewhere); the driver tails the file for its
        # progress bar instead of receiving every worker's stdout (jobrec.console)
        print(message, flush=True)
        progress_log.parent.mkdir(parents=True, exist_ok=True)
        with progress_log.open("a", encoding="utf-8") as f:
            f.write(message + "\n")

    run_phase(spec, arrays, RayContext(), progress=progress)


def _ensure_ray(cfg: TrainConfig) -> None:
    # the one ray.init of jobrec (workers.actors): $RAY_ADDRESS names a cluster, else a local
    # Ray of this process's own; the workers' epoch lines reach the driver's console
    from workers.actors import init_ray

    init_ray(os.environ.get("RAY_ADDRESS") or None, num_cpus=os.cpu_count(), log_to_driver=True)


def run_phase_ray(
    spec: PhaseSpec, arrays: dict[str, np.ndarray], cfg: TrainConfig, resume: bool
) -> list[dict]:
    """Run one phase under ``TorchTrainer`` with ``cfg.workers`` workers; return its history.

    Each CPU worker reserves ``spec.threads`` CPUs and uses that many torch threads. Without
    ``resume`` any earlier run of this phase is discarded so Ray Train starts fresh.
    """
    import json
    import shutil

    _ensure_ray(cfg)
    storage = Path(spec.phase_dir).parent.resolve() / "ray"
    if not resume and (storage / spec.kind).exists():
        shutil.rmtree(storage / spec.kind)
    storage.mkdir(parents=True, exist_ok=True)
    resources = {"CPU": spec.threads}
    if cfg.use_gpu:
        resources = {"CPU": 1, "GPU": 1}
    trainer = TorchTrainer(
        train_loop_per_worker=_train_loop,
        train_loop_config={"spec": spec, "arrays_ref": ray.put(arrays)},
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=spec.kind,
            storage_path=str(storage),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=0),
        ),
    )
    trainer.fit()
    return json.loads((Path(spec.phase_dir) / HISTORY).read_text())
