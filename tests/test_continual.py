"""Continual fine-tuning (tunelab.training.continual) on the tiny BERT: the label set grows with
the old labels' scores unchanged, the replay buffer stays bounded and balanced, EWC's penalty
is zero at the earlier weights, lora-per-task keeps every stage's adapter, the lineage lets
`tunelab evaluate --stages` score every stage, and bad continuations fail with one line."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

import tunelab
from conftest import toy_rows, train_args, write_csv
from tunelab.cli import main
from tunelab.data.batching import predict_logits, tokenize
from tunelab.models.hf import pad_id
from tunelab.runs import read_run
from tunelab.tasks import TASKS
from tunelab.training import continual, ewc, replay

TASK = TASKS["text-classification"]


# --- the replay buffer ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(20))
def test_balanced_counts_share_the_room_evenly_and_fill_it(seed):
    rng = random.Random(seed)
    avail = {f"c{i}": rng.randrange(0, 40) for i in range(rng.randrange(1, 6))}
    room = rng.randrange(1, 120)
    take = continual.replay.balanced_counts(avail, room)
    assert sum(take.values()) == min(room, sum(avail.values()))  # full when it can be
    assert all(0 <= take[c] <= avail[c] for c in avail)
    short = [c for c in avail if take[c] < avail[c]]  # classes that could give more
    if short:  # ...never hold fewer than a class that was cut off below its supply
        assert max(take.values()) - min(take[c] for c in short) <= 1


def test_the_buffer_stays_bounded_and_balanced_as_classes_arrive():
    rows = lambda label, n, stage: [  # noqa: E731
        {"text": f"{label} {i}", "label": label, "stage": stage} for i in range(n)
    ]
    buf = replay.update([], rows("a", 50, 1) + rows("b", 8, 1), size=20, seed=0)
    assert len(buf) == 20 and Counter(r["label"] for r in buf) == {"a": 12, "b": 8}
    buf = replay.update(buf, rows("c", 30, 2) + rows("d", 30, 2), size=20, seed=0)
    assert len(buf) == 20
    assert Counter(r["label"] for r in buf) == {"a": 5, "b": 5, "c": 5, "d": 5}
    assert len({r["text"] for r in buf}) == 20  # no example twice
    again = replay.update([], rows("a", 50, 1) + rows("b", 8, 1), size=20, seed=0)
    assert again == replay.update([], rows("a", 50, 1) + rows("b", 8, 1), size=20, seed=0)


# --- EWC -----------------------------------------------------------------------------------
def test_ewc_penalty_is_zero_at_the_earlier_weights_and_grows_away_from_them():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    model[0].weight.requires_grad_(False)  # frozen weights are not anchored
    fisher = {n: torch.rand_like(p) for n, p in model.named_parameters() if p.requires_grad}
    term = ewc.penalty(model, fisher, strength=2.0)
    assert term().item() == 0.0
    with torch.no_grad():
        model[1].weight.add_(0.1)
    moved = term().item()
    assert moved > 0
    scale = sum(v.numel() for v in fisher.values()) / sum(float(v.sum()) for v in fisher.values())
    expected = 0.5 * 2.0 * float((fisher["1.weight"] * scale * 0.01).sum())
    assert moved == pytest.approx(expected, rel=1e-5)
    term().backward()  # its closed-form gradient: strength x F x (w - w_prev)
    expected_grad = 2.0 * fisher["1.weight"] * scale * 0.1
    torch.testing.assert_close(model[1].weight.grad, expected_grad)
    assert model[0].weight.grad is None  # frozen: no gradient


def test_fisher_is_non_negative_and_a_grown_head_gets_zero_importance_on_new_rows():
    torch.manual_seed(0)
    from transformers import BertForSequenceClassification

    from conftest import tiny_bert_config

    model = BertForSequenceClassification(tiny_bert_config(50, num_labels=2))
    ids = [[1, 5, 7, 2], [1, 9, 2], [1, 4, 4, 8, 2]]
    f = ewc.fisher(
        model, ids, [0, 1, 0], 0, samples=3, seed=0, loss_fn=torch.nn.functional.cross_entropy
    )
    assert set(f) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all((v >= 0).all() for v in f.values()) and sum(float(v.sum()) for v in f.values()) > 0
    bigger = {"classifier.weight": torch.zeros(4, f["classifier.weight"].shape[1])}
    grown = ewc.grow(f, bigger)
    assert torch.equal(grown["classifier.weight"][:2], f["classifier.weight"])
    assert grown["classifier.weight"][2:].abs().sum() == 0


# --- growing the label set -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_grown_head_keeps_the_old_labels_scores_exactly(trained_runs, tiny_model_dir, method):
    """Before the new data touches it, the continued model scores the old labels exactly as
    the earlier run does; the new label gets a row of its own."""
    from transformers import AutoTokenizer

    from tunelab.methods import MethodContext, get_method

    old = tunelab.load(trained_runs[method], precision="fp32")
    prev = continual.Previous(trained_runs[method], read_run(trained_runs[method]), "naive", [])
    spec = {"labels": [*old.labels, "neutral"]}
    model = TASK.build_model(str(tiny_model_dir), spec)
    m = get_method(method)
    ctx = MethodContext(TASK, tuple(TASK.head_module_names(model)))
    model = m.apply(model, m.make_options({}), ctx)
    grown = continual.warm_start(model, continual.previous_state(prev, TASK, str(tiny_model_dir)))
    assert grown  # the head's rows
    tok = AutoTokenizer.from_pretrained(trained_runs[method])
    texts = [r["text"] for r in toy_rows(12, 7)]
    ids = tokenize(tok, texts, 32)
    model.eval()
    new = predict_logits(model, ids, pad_id(tok), 8)
    assert new.shape == (12, 3)
    np.testing.assert_allclose(new[:, :2], old.logits(texts), rtol=1e-5, atol=1e-5)


# --- the command line, end to end -----------------------------------------------------------
def _stage_data(d: Path, labels: tuple[str, ...], seed: int) -> dict[str, Path]:
    d.mkdir(parents=True, exist_ok=True)
    return {
        s: write_csv(d / f"{s}.csv", toy_rows(n, seed + i, labels))
        for i, (s, n) in enumerate((("train", 48), ("validation", 24), ("test", 24)))
    }


def _continue(prev: Path, data: dict[str, Path], out: Path, *extra: str) -> int:
    return main(
        [
            "train",
            "--continue-from",
            str(prev),
            "--train",
            str(data["train"]),
            "--validation",
            str(data["validation"]),
            "--test",
            str(data["test"]),
            "--epochs",
            "2",
            "--output-dir",
            str(out),
            "--no-progress",
            "--report-to",
            "none",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def replay_stages(trained_runs, tmp_path_factory):
    """Stage 1 is the shared full run (negative, positive); stage 2 brings 'neutral', stage 3
    'mixed', both continued with replay and a 10-example buffer."""
    d = tmp_path_factory.mktemp("continual")
    s2 = d / "s2"
    data2 = _stage_data(d / "data2", ("neutral", "positive"), 20)
    assert (
        _continue(trained_runs["full"], data2, s2, "--continual", "replay", "--replay-size", "10")
        == 0
    )
    data3 = _stage_data(d / "data3", ("mixed", "negative"), 30)
    s3 = d / "s3"
    assert _continue(s2, data3, s3) == 0  # the strategy and buffer size are taken over
    return trained_runs["full"], s2, s3


def test_replay_continuation_grows_labels_keeps_a_balanced_buffer_and_records_lineage(
    replay_stages,
):
    s1, s2, s3 = replay_stages
    assert read_run(s2).labels == ["negative", "positive", "neutral"]
    assert read_run(s3).labels == ["negative", "positive", "neutral", "mixed"]
    for run, classes in ((s2, 3), (s3, 4)):
        buf = replay.read(run)
        assert buf is not None and len(buf) == 10
        counts = Counter(r["label"] for r in buf)
        assert len(counts) == classes and max(counts.values()) - min(counts.values()) <= 1
    cfg = yaml.safe_load((s3 / "config.yaml").read_text())
    first = yaml.safe_load((s1 / "config.yaml").read_text())
    # settings not given again are the continued run's (data files never are)
    for key in ("model", "learning_rate", "max_length", "batch_size", "method"):
        assert cfg[key] == first[key]
    assert cfg["continual"] == "replay" and cfg["replay_size"] == 10
    lineage = read_run(s3).lineage
    assert [st["stage"] for st in lineage] == [1, 2, 3]
    assert [st["strategy"] for st in lineage] == ["initial", "replay", "replay"]
    assert lineage[1]["labels"] == ["neutral", "positive"]
    assert all(Path(st["data"]["test"]["path"]).is_absolute() for st in lineage)
    assert (
        lineage[0]["test_metrics"]["accuracy"]
        == json.loads((s1 / "metrics.json").read_text())["test"]["accuracy"]
    )
    m = json.loads((s3 / "metrics.json").read_text())["continual"]
    assert m["strategy"] == "replay" and m["stage"] == 3 and m["replayed"] == 10


def test_evaluate_stages_scores_every_stage_and_reports_forgetting(replay_stages, capsys):
    s3 = replay_stages[2]
    assert main(["evaluate", "--model-dir", str(s3), "--stages"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["stage"] for r in out["stages"]] == [1, 2, 3]
    for r in out["stages"]:
        assert r["n"] == 24 or r["stage"] == 1
        assert 0 <= r["accuracy"] <= 1
    first = out["stages"][0]
    assert first["forgetting"] == pytest.approx(first["accuracy_when_trained"] - first["accuracy"])
    assert out["backward_transfer"] == pytest.approx(
        -(out["stages"][0]["forgetting"] + out["stages"][1]["forgetting"]) / 2
    )
    # a plain run has no stages: one line, exit 2
    assert main(["evaluate", "--model-dir", str(replay_stages[0]), "--stages"]) == 2
    assert "not a continued run" in capsys.readouterr().err


def test_ewc_continuation_keeps_its_fisher_sum(trained_runs, tmp_path):
    data = _stage_data(tmp_path / "data", ("neutral", "positive"), 40)
    out = tmp_path / "ewc"
    assert (
        _continue(trained_runs["full"], data, out, "--continual", "ewc", "--ewc-samples", "8") == 0
    )
    fisher = ewc.load(out)
    assert fisher and all((v >= 0).all() for v in fisher.values())
    head = fisher["classifier.weight"]
    assert head.shape[0] == 3 and head[2].abs().sum() == 0  # the new label's row: free
    m = json.loads((out / "metrics.json").read_text())["continual"]
    assert m["strategy"] == "ewc" and m["ewc_samples"] == 8 and m["fisher_seconds"] >= 0
    assert replay.read(out) is None  # EWC keeps no earlier examples


def test_lora_per_task_keeps_each_stage_adapter_on_one_base(trained_runs, tmp_path):
    data = _stage_data(tmp_path / "data", ("neutral", "mixed"), 50)
    out = tmp_path / "per-task"
    assert _continue(trained_runs["lora"], data, out, "--continual", "lora-per-task") == 0
    assert read_run(out).labels == ["mixed", "neutral"]  # its own task's labels only
    stages = tunelab.load_stages(out, precision="fp32")
    assert sorted(stages) == ["1", "2"]
    assert len(stages.shared_groups()) == 1  # one copy of the base for both adapters
    texts = [r["text"] for r in toy_rows(8, 9)]
    alone = tunelab.load(trained_runs["lora"], precision="fp32").predict(texts)
    assert stages.predict(texts, adapter="1") == alone  # stage 1 exactly as it was trained
    assert {p["label"] for p in stages.predict(texts, adapter="2")} <= {"mixed", "neutral"}
    assert (out / "stages" / "1" / "adapter_model.safetensors").is_file()


# --- bad continuations ---------------------------------------------------------------------
def test_bad_continuations_fail_with_one_line(trained_runs, learnable_model_dir, tmp_path, capsys):
    data = _stage_data(tmp_path / "data", ("neutral", "positive"), 60)
    full = trained_runs["full"]
    cases = [
        (
            full,
            ["--task", "regression", "--label-column", "label"],
            "cannot be continued as regression",
        ),
        (full, ["--model", str(learnable_model_dir)], "same base model"),
        (full, ["--method", "lora"], "use --method full"),
        (trained_runs["lora"], ["--continual", "lora-per-task", "--method", "full"], "adapter"),
        (tmp_path, [], "not a finished tunelab run folder"),
    ]
    for i, (prev, extra, words) in enumerate(cases):
        assert _continue(prev, data, tmp_path / f"bad{i}", *extra) == 2, words
        err = capsys.readouterr().err.strip()
        assert words in err and "Traceback" not in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / f"bad{i}").exists()  # nothing written


def test_replay_without_earlier_data_says_so(
    trained_runs, toy_data, tiny_model_dir, tmp_path, capsys
):
    """A first stage whose training file is gone, and no buffer: replay cannot draw from it."""
    gone = tmp_path / "gone.csv"
    write_csv(gone, toy_rows(32, 11))
    first = tmp_path / "first"
    args = train_args(tiny_model_dir, {**toy_data, "train": gone}, first, "--epochs", "1")
    assert main(args) == 0
    gone.unlink()
    data = _stage_data(tmp_path / "data", ("neutral", "positive"), 70)
    assert _continue(first, data, tmp_path / "next", "--continual", "replay") == 2
    err = capsys.readouterr().err
    assert "training file is gone" in err and "Traceback" not in err


def test_dark_experience_replay_loss_adds_the_error_to_the_earlier_scores():
    task = TASKS["text-classification"]
    prev = continual.Previous(Path("."), None, "replay", [], distilled=2)  # type: ignore[arg-type]

    settings = SimpleNamespace(continual=SimpleNamespace(replay_distill=0.5))
    P = SimpleNamespace(previous=prev, spec={"labels": ["a", "b", "c"]}, task=task, cfg=settings)
    fn = continual.loss(P)
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0]])
    plain = task.loss_fn(logits, torch.tensor([0, 2]), P.spec)
    own = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])  # weight 0: this stage's
    assert fn(logits, own).item() == pytest.approx(plain.item())
    kept = torch.tensor([[0.0, 1.0, 2.0, -1.0], [2.0, 1.0, 0.0, 1.0]])  # scores unchanged
    assert fn(logits, kept).item() == pytest.approx(plain.item())
    moved = torch.tensor([[0.0, 1.0, 0.0, -1.0], [2.0, 0.0, 0.0, 0.0]])  # 2 off on one score
    assert fn(logits, moved).item() == pytest.approx(plain.item() + 0.5 * (4.0 / 2) / 2)


def test_replay_rotation_trains_a_new_block_of_earlier_rows_each_epoch():
    from tunelab.training.supervised import _epoch_batches, epoch_rows, rotation

    fixed, per, n = 10, 4, 22  # 10 of this stage's rows, 12 earlier ones, 4 per epoch
    seen = []
    for epoch in range(3):
        rows = rotation(n, fixed, per, epoch)
        assert rows[:fixed] == list(range(fixed)) and len(rows) == epoch_rows(n, (fixed, per))
        seen += rows[fixed:]
        batches = _epoch_batches([5] * n, 4, 0, True, None, epoch, rotate=(fixed, per))
        assert sorted(i for b in batches for i in b) == sorted(rows)
    assert sorted(seen) == list(range(fixed, n))  # every earlier row once in three epochs
    assert rotation(n, fixed, 40, 0) == list(range(n))  # a block larger than the pool: all
