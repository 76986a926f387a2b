"""W-BERT training under real Ray Train (2 CPU workers): loss goes down, checkpoints, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.reference import occupations
from core.synth import generate_postings
from training.config import TrainConfig
from training.phase import LocalContext, run_phase
from training.train import _phase_spec, prepare_data, split_indices, train_model

CFG = TrainConfig(
    epochs=3, mlm_epochs=1, workers=2, threads_per_worker=1, batch_size=16, max_length=40,
    vocab_size=2000, patience=5, log_every=0, lr=2e-3,
)


@pytest.fixture(scope="module")
def postings():
    return generate_postings(500, seed=21)


@pytest.fixture(scope="module")
def trained(ray_local, postings, tmp_path_factory):
    from training.ray_train import run_phase_ray

    out = tmp_path_factory.mktemp("wbert") / "model"
    metrics = train_model(postings, out, CFG, runner=run_phase_ray, keep_work=True)
    return out, metrics


def test_split_is_a_seeded_partition():
    tr, va, te = split_indices(100, 0.1, 0.2, seed=3)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(100))
    assert (len(va), len(te)) == (10, 20)
    again = split_indices(100, 0.1, 0.2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again, strict=True))


def test_labels_are_primary_keco_groups(postings, tmp_path):
    data, _ = prepare_data(postings.head(60), replace(CFG, max_samples=None), tmp_path)
    occ = occupations()
    for pid, code, mj, md in zip(
        data.posting_ids, postings.head(60)["occupation_code"], data.major, data.mid, strict=True
    ):
        assert pid
        assert data.major_labels[mj] == occ[code].major_code
        assert data.mid_labels[md] == occ[code].mid_code
    assert len(data.major_labels) == 13 and len(data.mid_labels) == 112


def test_ray_training_with_two_workers_lowers_the_loss(trained):
    out, metrics = trained
    meta = json.loads((out / "wbert.json").read_text())
    ft = meta["history"]["finetune"]
    assert len(ft) == 3
    # two DDP workers split the 400 training postings: 200 each, 16 per step -> 12 steps
    assert [h["step"] for h in ft] == [12, 24, 36]
    assert ft[-1]["train_loss"] < ft[0]["train_loss"]
    assert ft[-1]["val_loss"] < ft[0]["val_loss"]
    assert meta["history"]["mlm"][0]["train_loss"] > 0


def test_model_dir_is_plain_hugging_face(trained):
    from transformers import AutoModel, AutoTokenizer

    out, _ = trained
    model = AutoModel.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.config.hidden_size == 256
    assert len(tok) == model.config.vocab_size


def test_metrics_match_an_independent_recount(trained, postings):
    from training.evaluate import predict_levels

    out, metrics = trained
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["wbert"]["major"]["accuracy"] == metrics["wbert"]["major"]["accuracy"]
    data, _ = prepare_data(postings, CFG, out / ".work")
    te = data.test_idx
    pm, pd = predict_levels(out, data.input_ids[te], data.lengths[te])
    assert metrics["wbert"]["major"]["accuracy"] == pytest.approx(float(np.mean(pm == data.major[te])))
    assert metrics["wbert"]["mid"]["accuracy"] == pytest.approx(float(np.mean(pd == data.mid[te])))
    for side in ("wbert", "tfidf_logreg"):
        for level in ("major", "mid"):
            assert 0.0 <= metrics[side][level]["macro_f1"] <= 1.0
    nb = metrics["neighbours"]
    assert 0.0 <= nb["wbert_same_mid_share"] <= 1.0 and 0.0 <= nb["tfidf_same_mid_share"] <= 1.0


def test_checkpoints_reload_and_training_resumes(trained, postings):
    from training.model import WBertForKeco
    from training.ray_train import run_phase_ray

    out, _ = trained
    work = out / ".work"
    ckpts = sorted(p for p in (work / "ray" / "finetune").glob("checkpoint_*") if p.is_dir())
    assert ckpts, "Ray Train kept no checkpoint"
    latest = ckpts[-1]
    assert WBertForKeco.from_pretrained(str(latest)).config.keco_mid_labels
    before = json.loads((work / "finetune" / "history.json").read_text())
    data, _ = prepare_data(postings, CFG, work)
    # ask for one more epoch: Ray Train restores the run, the loop starts after epoch 3
    spec = replace(_phase_spec("finetune", CFG, data, work, str(work / "mlm" / "best")), epochs=4)
    history = run_phase_ray(spec, data.arrays(), CFG, resume=True)
    assert len(history) == 4
    assert history[:3] == before
    assert history[3]["epoch"] == 3 and history[3]["step"] == 48


def test_early_stopping_stops_when_validation_stalls(postings, tmp_path):
    cfg = replace(CFG, workers=1, threads_per_worker=2, patience=0, epochs=4, lr=1e-9, mlm_epochs=0)
    data, _ = prepare_data(postings.head(200), cfg, tmp_path)
    mlm = replace(_phase_spec("mlm", cfg, data, tmp_path, None), epochs=1, lr=1e-3)
    run_phase(mlm, data.arrays(), LocalContext(Path(mlm.phase_dir)))
    spec = _phase_spec("finetune", cfg, data, tmp_path, str(tmp_path / "mlm" / "best"))
    history = run_phase(spec, data.arrays(), LocalContext(Path(spec.phase_dir)))
    # lr 1e-9 leaves the predictions unchanged: epoch 2 does not improve, patience 0 stops it
    assert len(history) == 2
    assert (tmp_path / "finetune" / "best" / "model.safetensors").exists()


def test_config_validation():
    with pytest.raises(ValueError, match="size"):
        TrainConfig(size="huge")
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="workers"):
        TrainConfig(workers=0)
