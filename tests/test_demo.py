"""`jobrec demo`: its training progress counts the epochs that run, and what it prints names
KECO occupations beside their codes (issue #20)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from core.reference import occupations
from training.progress import epoch_progress

N_POSTINGS = 500


def test_epoch_progress_counts_epoch_lines_only():
    planned = {"mlm": 1, "finetune": 3}
    assert epoch_progress([], planned) == (0, 4)
    lines = [
        "[mlm] plan: 1 epochs (125 steps, 125 per epoch)",
        "[mlm] epoch 1/1 step 50/125 loss 7.0076 128 postings/s",  # the old bar counted these
        "[mlm] epoch 1/1 step 100/125 loss 6.3800 137 postings/s",
        "[mlm] epoch 1/1 done in 29s: train_loss 6.25, val_score -5.5 (best)",
        "[mlm] finished after 1 epochs (125 steps)",
        "[finetune] plan: 3 epochs (375 steps, 125 per epoch)",
        "[finetune] epoch 1/3 step 50/375 loss 3.1 98 postings/s",
        "[finetune] epoch 1/3 done in 43s: val_score 0.8 (best)",
    ]
    assert epoch_progress(lines, planned) == (2, 4)
    # early stop after epoch 2: the finished line makes the total what ran
    stopped = [*lines, "[finetune] epoch 2/3 done in 43s: val_score 0.7 -> early stop",
               "[finetune] finished after 2 epochs (250 steps)"]
    assert epoch_progress(stopped, planned) == (3, 3)
    # a resumed phase repeats no epoch in the count
    assert epoch_progress([*lines, lines[-1]], planned) == (2, 4)


@pytest.fixture(scope="module")
def corpus():
    from core.synth import generate_postings

    return generate_postings(N_POSTINGS, 13, ref_date=dt.date.today())


def test_training_progress_total_is_the_epochs_that_ran(corpus, tmp_path, capsys):
    """A real (local) training run whose max_steps ends fine-tuning after 2 of 3 epochs: the
    bar's total, planned from the config as 1 + 3, ends at the 3 epochs that ran."""
    from jobrec.console import FileProgress
    from training.train import TrainConfig, run_local, train_model

    # 400 training postings / batch 32 = 12 steps per epoch: 20 steps are 2 epochs
    cfg = TrainConfig(epochs=3, mlm_epochs=1, max_steps=20, vocab_size=1500, max_length=32,
                      log_every=5, patience=5)  # fmt: skip
    train_model(corpus, tmp_path / "m", cfg, runner=run_local, compute_metrics=False)
    lines = capsys.readouterr().out.splitlines()
    assert any(" step 5/" in x for x in lines)  # step lines are there, and not epochs
    epoch_lines = [x for x in lines if re.match(r"^\[\w+\] epoch \d+/\d+ done in", x)]
    planned = {"mlm": cfg.effective_mlm_epochs, "finetune": cfg.epochs}
    assert epoch_progress(lines, planned) == (len(epoch_lines), len(epoch_lines)) == (3, 3)
    # the bar reads the same from progress files
    log = tmp_path / "progress.log"
    log.write_text("\n".join(lines[:1]) + "\n", encoding="utf-8")
    bar = FileProgress(lambda: [log, tmp_path / "missing.log"],
                       lambda x: epoch_progress(x, planned), "train", enabled=False)
    with bar:
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert (bar.n, bar.total) == (3, 3)


@pytest.fixture(scope="module")
def model_dir(corpus, tmp_path_factory):
    from training.train import TrainConfig, run_local, train_model

    out = tmp_path_factory.mktemp("demo_model")
    cfg = TrainConfig(epochs=1, mlm_epochs=1, max_steps=3, vocab_size=1500, max_length=32,
                      log_every=0)  # fmt: skip
    train_model(corpus, out, cfg, runner=run_local, compute_metrics=False)
    return out


def test_demo_names_occupations_beside_codes(ray_local, corpus, model_dir, tmp_path, capsys):
    from jobrec.cli import main

    postings = tmp_path / "postings.parquet"
    corpus.write_parquet(postings)
    rc = main(["demo", "--once", "--port", "0", "--postings", str(postings), "--model",
               str(model_dir), "--workdir", str(tmp_path / "demo"), "--shards", "1", "--k", "3",
               "--courses", "100"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0 and "warning" not in out
    assert out.count("same as the batch refresh: yes") == 3
    # every 6-digit code a person reads is followed by its KECO name
    # (names may hold parentheses themselves: 전기용접원(아크,알곤,티그용접원))
    occ = occupations()
    spots = [(m.group(1), m.end()) for m in re.finditer(r"(?<!\d)(\d{6})(?!\d)", out)
             if m.group(1) in occ]
    assert spots and all(out.startswith(f" ({occ[c].name})", end) for c, end in spots), spots
    wants = re.search(r"seeker \S+: wants (.+?) in ", out)
    assert wants
    named = [f"{c} ({occ[c].name})" for c in re.findall(r"(?<!\d)\d{6}(?!\d)", wants.group(1))]
    assert named and wants.group(1) == ", ".join(named)
    # education levels are words, not their codes
    assert not re.search(r"education \d", out)


def test_occupation_label():
    from jobrec.demo import occupation_label

    code, occ = next(iter(occupations().items()))
    assert occupation_label(code) == f"{code} ({occ.name})"
    assert occupation_label("999999") == "999999" and occupation_label(None) == "None"


def test_demo_budget_is_a_valid_config():
    from jobrec.demo import DEFAULT_TRAIN_N, demo_train_config

    cfg = demo_train_config(7, DEFAULT_TRAIN_N)
    assert cfg.max_samples == DEFAULT_TRAIN_N and cfg.size == "tiny"
    assert Path  # noqa: B018  (imported for type use above in fixtures)
