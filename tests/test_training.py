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


def test_major_from_mid_follows_the_keco_table(postings, tmp_path):
    from training.evaluate import mid_major_matrix

    data, _ = prepare_data(postings.head(60), replace(CFG, max_samples=None), tmp_path)
    m = mid_major_matrix(data.mid_labels, data.major_labels)
    assert m.shape == (112, 13) and (m.sum(axis=1) == 1).all()
    # the posting's own mid group maps to its own major group (the reference's primary group)
    for mj, md in zip(data.major, data.mid, strict=True):
        assert m[md].argmax() == mj


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
    # the default recipe's contrastive objectives each go down under the two DDP workers
    assert meta["objectives"] == list(CFG.objectives)
    for name in ("title", "dropout", "supcon"):
        if name in CFG.objectives:
            assert ft[-1][f"train_loss_{name}"] < ft[0][f"train_loss_{name}"], name
    # the label-free validation score is far above chance (1 / 50 validation postings)
    assert max(h["val_title_body_acc"] for h in ft) > 5 / 50


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
    pred = predict_levels(out, data.input_ids[te], data.lengths[te])
    for level, key in (("major", "major"), ("major_head", "major"), ("mid", "mid")):
        truth = getattr(data, key)[te]
        assert metrics["wbert"][level]["accuracy"] == pytest.approx(float(np.mean(pred[level] == truth)))
    for side in ("wbert", "tfidf_logreg"):
        for level in ("major", "mid"):
            assert 0.0 <= metrics[side][level]["macro_f1"] <= 1.0
    assert metrics["major_acc_not_below_tfidf"] == (
        metrics["wbert"]["major"]["accuracy"] >= metrics["tfidf_logreg"]["major"]["accuracy"])
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


# -- objectives ------------------------------------------------------------------------------


def _tiny_keco_model():
    import torch
    from transformers import BertConfig

    from training.model import WBertForKeco

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=32)
    cfg.keco_major_labels, cfg.keco_mid_labels = ["a", "b"], ["x", "y", "z"]
    return WBertForKeco(cfg)


def _hand_batch(n=6):
    import torch

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 50, (n, 10), generator=g)
    attn = torch.ones_like(ids)
    attn[0, 7:] = 0
    return {
        "input_ids": ids, "attention_mask": attn,
        "title_ids": ids[:, :4], "title_mask": attn[:, :4],
        "body_ids": ids[:, 4:], "body_mask": attn[:, 4:],
        "major": torch.tensor([0, 1, 0, 1, 0, 1]), "mid": torch.tensor([0, 1, 2, 0, 1, 2]),
        "fine": torch.tensor([3, 3, -1, 5, -1, 5]),
    }


def test_each_objective_loss_is_finite_and_has_gradients():
    import torch

    from training.objectives import OBJECTIVES, objective_losses

    model = _tiny_keco_model().train()
    b = _hand_batch()
    for objectives in [(o,) for o in OBJECTIVES] + [OBJECTIVES]:
        losses = objective_losses(model, b, objectives, 0.05, 0, torch.device("cpu"))
        assert set(objectives) <= set(losses)
        for name in objectives:
            assert torch.isfinite(losses[name]) and losses[name] > 0, (objectives, name)
        model.zero_grad()
        sum(losses.values()).backward()
        grads = [p.grad for p in model.parameters()]
        # every parameter takes part (DDP's contract), the encoder gets a real gradient
        assert all(g is not None for g in grads)
        assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0


def test_supcon_positives_on_a_hand_built_batch():
    import torch

    from training.objectives import supcon_labels

    # two views of 6 postings; codes 3, 3, none, 5, none, 5
    labels = supcon_labels(torch.tensor([3, 3, -1, 5, -1, 5]), views=2)
    pos = {(i, j) for i in range(12) for j in range(12) if i != j and labels[i] == labels[j]}
    expected = set()
    groups = [[0, 1, 6, 7], [2, 8], [3, 5, 9, 11], [4, 10]]  # rows of the same code / posting
    for grp in groups:
        expected |= {(i, j) for i in grp for j in grp if i != j}
    assert pos == expected


def test_supcon_and_info_nce_match_a_direct_computation():
    import math

    import torch

    from training.objectives import info_nce, supcon_loss

    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 4, generator=g)
    labels = torch.tensor([1, 1, 2, 1, 7])
    t = 0.5
    u = [row / math.sqrt(sum(float(x) ** 2 for x in row)) for row in z]

    def dot(a, b):
        return sum(float(x) * float(y) for x, y in zip(a, b, strict=True))

    anchors = []
    for i in range(5):
        positives = [p for p in range(5) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(dot(u[i], u[a]) / t) for a in range(5) if a != i)
        anchors.append(-sum(math.log(math.exp(dot(u[i], u[p]) / t) / denom) for p in positives) / len(positives))
    assert float(supcon_loss(z, labels, t)) == pytest.approx(sum(anchors) / len(anchors), rel=1e-5)

    w = torch.randn(5, 4, generator=g)
    v = [row / math.sqrt(sum(float(x) ** 2 for x in row)) for row in w]
    fwd = -sum(math.log(math.exp(dot(u[i], v[i]) / t) / sum(math.exp(dot(u[i], v[j]) / t) for j in range(5)))
               for i in range(5)) / 5
    bwd = -sum(math.log(math.exp(dot(v[i], u[i]) / t) / sum(math.exp(dot(v[i], u[j]) / t) for j in range(5)))
               for i in range(5)) / 5
    assert float(info_nce(z, w, t)) == pytest.approx((fwd + bwd) / 2, rel=1e-5)


def test_label_free_training_end_to_end_through_the_cli(ray_local, tmp_path):
    from encoding.encoder import Encoder
    from jobrec.cli import main as cli_main

    df = generate_postings(160, seed=5).drop("occupation_code")
    src = tmp_path / "nocodes.parquet"
    df.write_parquet(src)
    out = tmp_path / "model"
    assert cli_main(["train", "--postings", str(src), "--out", str(out), "--epochs", "2",
                     "--max-steps", "4", "--max-length", "32", "--batch-size", "16",
                     "--threads-per-worker", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    meta = json.loads((out / "wbert.json").read_text())
    assert metrics["labels_absent"] and "occupation_code" in metrics["labels_absent"][0]
    assert metrics["objectives"] == ["title", "dropout"] == meta["objectives"]
    assert "wbert" not in metrics  # no KECO accuracy without labels
    assert meta["hybrid_weight"] is None and meta["hybrid_weight_note"]
    assert metrics["hybrid"]["weight"] is None
    ft = meta["history"]["finetune"]
    # model selection on the label-free validation score, not on a majority class
    assert all(h["val_score"] == h["val_title_body_acc"] for h in ft)
    r = metrics["title_body_retrieval"]
    assert r["queries"] == 16 and 0.0 <= r["wbert"] <= 1.0
    vec = Encoder.load(out).encode(["지게차 운전원 구함", "웹 프론트엔드 개발자"])
    assert vec.shape == (2, 256) and np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-5)


def test_objectives_config_and_cli_default():
    import argparse

    from training import cli

    with pytest.raises(ValueError, match="objectives"):
        TrainConfig(objectives=("keco", "nonsense"))
    with pytest.raises(ValueError, match="objectives"):
        TrainConfig(objectives=())
    with pytest.raises(ValueError, match="objectives"):
        TrainConfig(objectives="keco")
    with pytest.raises(ValueError, match="temperature"):
        TrainConfig(temperature=0.0)
    cfg = TrainConfig(objectives=("keco", "supcon", "title"))
    assert cfg.effective_objectives(True) == ("keco", "supcon", "title")
    assert cfg.effective_objectives(False) == ("title",)
    assert TrainConfig(objectives=("keco",)).effective_objectives(False) == ("title", "dropout")
    ap = argparse.ArgumentParser()
    cli.register(ap.add_subparsers())
    args = ap.parse_args(["train", "--postings", "x"])
    assert tuple(args.objectives.split(",")) == TrainConfig().objectives
