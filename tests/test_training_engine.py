"""The training engine: gradient accumulation equals one large batch, a SIGKILLed run resumes
to the same weights, Ctrl-C saves a checkpoint, checkpoints are atomic, schedules and
precision options work."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FILLER, NEG, POS, make_tiny_bert
from fault_helpers import run_args
from tunelab.cli import main


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory) -> Path:
    """Tiny BERT without dropout: two runs that see the same data must give the same weights."""
    from transformers import AutoConfig

    d = make_tiny_bert(tmp_path_factory.mktemp("tiny-nodrop"), 0.2)
    cfg = AutoConfig.from_pretrained(d)
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    cfg.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def ner_file(tmp_path_factory) -> Path:
    """Sentences of very different lengths, so micro-batches hold different token counts."""
    rng = random.Random(0)
    rows = []
    for i in range(48):
        n = rng.choice([2, 3, 9, 14])
        words = [rng.choice(FILLER) for _ in range(n - 1)] + [rng.choice(POS if i % 2 else NEG)]
        tags = ["O"] * (n - 1) + ["B-P" if i % 2 else "B-N"]
        rows.append({"tokens": words, "tags": tags})
    f = tmp_path_factory.mktemp("ner") / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _weights(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(run / "model.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def _ner_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--task",
        "token-classification",
        "--model",
        str(model),
        "--train",
        str(data),
        "--validation",
        str(data),
        "--epochs",
        "1",
        "--learning-rate",
        "1e-3",
        "--max-length",
        "32",
        "--output-dir",
        str(out),
        "--no-progress",
        "--warmup-ratio",
        "0",
        *extra,
    ]


def _first_step_grads(
    model_dir: Path, data: Path, batch_size: int, k: int, units=None
) -> dict[str, torch.Tensor]:
    """Gradients of the first optimizer step (captured by the after_step hook, which runs
    before zero_grad). Compared as gradients: after Adam, whose first step is about
    lr * sign(g), float noise on near-zero gradients would dominate."""
    from functools import partial

    from transformers import AutoTokenizer

    from tunelab.tasks import token_classification as tcls
    from tunelab.training.loop import LoopSettings, fit
    from tunelab.training.supervised import StepSettings, supervised_job

    ex = tcls.read_examples(str(data), "tokens", "tags")
    spec = tcls.make_spec(ex, {"causal_model": False})
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    ids, y = tcls.encode(tok, ex, spec, 32, "tags")
    torch.manual_seed(0)
    model = tcls.build_model(str(model_dir), spec)
    grads: dict[str, torch.Tensor] = {}

    def capture(step: int) -> None:
        if step == 0:
            grads.update(
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            )

    steps = StepSettings(
        epochs=1,
        batch_size=batch_size,
        learning_rate=1e-3,
        weight_decay=0.0,
        warmup_ratio=0.0,
        max_grad_norm=0.0,
        seed=0,
        gradient_accumulation_steps=k,
    )
    job = supervised_job(
        model,
        ids,
        y,
        tok.pad_token_id,
        partial(tcls.loss_fn, spec=spec),
        steps,
        tcls.collate_targets,
        after_step=capture,
        loss_units=units or tcls.loss_units,
    )
    fit(job, LoopSettings(epochs=1, metric="f1"), lambda: {"f1": 0.0}, lambda e: None)
    return grads


def test_accumulation_equals_one_large_batch(no_dropout_model, ner_file):
    """Batch 4 x 4 accumulation steps == batch 16, token-level loss normalised over the step's
    labelled tokens. The naive mean of micro-batch means (the old popular-trainer bug) is
    measurably different, so this test can fail."""
    big = _first_step_grads(no_dropout_model, ner_file, 16, 1)
    acc = _first_step_grads(no_dropout_model, ner_file, 4, 4)
    naive = _first_step_grads(no_dropout_model, ner_file, 4, 4, units=lambda t: t.shape[0])
    assert big.keys() == acc.keys() and len(big) > 10
    for n in big:
        torch.testing.assert_close(acc[n], big[n], rtol=1e-4, atol=1e-7)
    worst = max(float((naive[n] - big[n]).norm() / big[n].norm()) for n in big)
    assert worst > 0.01


def test_accumulated_run_matches_through_the_cli(no_dropout_model, ner_file, tmp_path):
    """End to end: the same run with --gradient-accumulation-steps reaches the same model."""
    big, acc = tmp_path / "big", tmp_path / "acc"
    assert main(_ner_args(no_dropout_model, ner_file, big, "--batch-size", "16")) == 0
    assert (
        main(
            _ner_args(
                no_dropout_model,
                ner_file,
                acc,
                "--batch-size",
                "4",
                "--gradient-accumulation-steps",
                "4",
            )
        )
        == 0
    )
    assert _max_diff(_weights(big), _weights(acc)) < 5e-4
    a = json.loads((big / "metrics.json").read_text())["validation"]
    b = json.loads((acc / "metrics.json").read_text())["validation"]
    assert a["f1"] == pytest.approx(b["f1"], abs=1e-6)


FAULTY = Path(__file__).with_name("faulty_train.py")


def _cli(args: list[str], fault: str | None = None) -> subprocess.CompletedProcess:
    """``tunelab ARGS`` in a child process; ``fault`` (``kill@7``, ``int@5``) runs it through
    tests/faulty_train.py, which adds the fault-injecting callback to the training loop."""
    cmd = (
        [sys.executable, str(FAULTY), fault, *args]
        if fault
        else [sys.executable, "-m", "tunelab", *args]
    )
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_sigkill_mid_epoch_then_resume_gives_the_same_model(
    learnable_model_dir, toy_data, tmp_path
):
    """Killed with SIGKILL after step 10 of 18 (mid-epoch 2, with dropout on), resumed from
    the step-8 checkpoint: same final weights and metrics as an uninterrupted run."""
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert _cli(run_args(learnable_model_dir, toy_data, whole)).returncode == 0
    r = _cli(run_args(learnable_model_dir, toy_data, killed), fault="kill@10")
    assert r.returncode == -9, r.stderr[-1500:]
    ckpts = killed.parent / "killed.checkpoints"
    assert sorted(p.name for p in ckpts.glob("step-*")) == ["step-000006", "step-000008"]
    assert not killed.exists()
    # a fresh start on top of the interrupted run is refused, not silently done
    r = _cli(run_args(learnable_model_dir, toy_data, killed))
    assert r.returncode == 2 and "--resume" in r.stderr
    r = _cli(run_args(learnable_model_dir, toy_data, killed, "--resume"))
    assert r.returncode == 0, r.stderr[-1500:]
    assert "resuming from" in r.stderr and "step-000008" in r.stderr
    assert _max_diff(_weights(whole), _weights(killed)) < 1e-6
    a = json.loads((whole / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["validation"] == b["validation"]
    assert a["training"]["best_step"] == b["training"]["best_step"]
    log = [json.loads(x) for x in (killed / "train_log.jsonl").open()]
    assert [e["step"] for e in log if e["type"] == "eval"] == [6, 12, 18]
    assert not ckpts.exists()  # a finished run removes its checkpoints


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(learnable_model_dir, toy_data, tmp_path):
    out = tmp_path / "run"
    r = _cli(run_args(learnable_model_dir, toy_data, out), fault="int@5")
    assert r.returncode == 130
    assert "interrupted at step 5" in r.stderr and "--resume" in r.stderr
    assert "Traceback" not in r.stderr
    assert (tmp_path / "run.checkpoints" / "step-000005" / "checkpoint.json").is_file()
    r = _cli(run_args(learnable_model_dir, toy_data, out, "--resume", "--epochs", "2"))
    assert r.returncode == 2 and "key 'epochs' was 3.0" in r.stderr
    assert _cli(run_args(learnable_model_dir, toy_data, out, "--resume")).returncode == 0
    assert (out / "tunelab.json").is_file()


def test_a_failed_checkpoint_write_keeps_the_previous_one(tiny_model_dir, tmp_path, monkeypatch):
    from tunelab.errors import TunelabError
    from tunelab.tasks import text_classification as tc
    from tunelab.training import checkpoint

    model = tc.build_model(str(tiny_model_dir), {"labels": ["a", "b"]})
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    d = tmp_path / "ck"
    checkpoint.save(d, model, [opt], [sched], checkpoint.LoopState(step=1), None, keep=2)

    def disk_full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(TunelabError, match="No space left on device.*previous checkpoint"):
        checkpoint.save(d, model, [opt], [sched], checkpoint.LoopState(step=2), None, keep=2)
    assert [p.name for p in d.iterdir()] == ["step-000001"]
    assert checkpoint.complete(d) == [d / "step-000001"]


@pytest.mark.parametrize("scheduler", ["linear", "cosine", "constant"])
def test_schedules(scheduler, tiny_model_dir, toy_data, tmp_path):
    out = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(toy_data["train"]),
                "--validation",
                str(toy_data["validation"]),
                "--epochs",
                "4",
                "--batch-size",
                "8",
                "--learning-rate",
                "1e-3",
                "--warmup-ratio",
                "0.2",
                "--lr-scheduler",
                scheduler,
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    lrs = [
        json.loads(x)["learning_rate"] for x in (out / "train_log.jsonl").open() if '"train"' in x
    ]  # steps 10, 20, ..., 48 of 48; warm-up ends at step 10
    assert max(lrs) == pytest.approx(1e-3, rel=0.05)
    if scheduler == "constant":
        assert lrs[-1] == pytest.approx(1e-3)
    else:
        assert lrs[-1] == pytest.approx(0.0, abs=1e-9)
        import math

        progress = (30 - 10) / (48 - 10)  # step 30, after 10 warm-up steps of 48
        expected = (
            1 - progress if scheduler == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
        )
        assert lrs[2] == pytest.approx(1e-3 * expected, rel=1e-3)


def test_bf16_and_gradient_checkpointing_train(no_dropout_model, toy_data, tmp_path):
    """bf16 autocast on the CPU learns; gradient checkpointing gives the same weights."""
    plain, ckpt, bf16 = tmp_path / "plain", tmp_path / "gc", tmp_path / "bf16"
    common = [
        "--model",
        str(no_dropout_model),
        "--train",
        str(toy_data["train"]),
        "--validation",
        str(toy_data["validation"]),
        "--epochs",
        "8",
        "--batch-size",
        "16",
        "--learning-rate",
        "3e-3",
        "--no-progress",
    ]
    assert main(["train", *common, "--output-dir", str(plain)]) == 0
    assert main(["train", *common, "--gradient-checkpointing", "--output-dir", str(ckpt)]) == 0
    assert _max_diff(_weights(plain), _weights(ckpt)) < 1e-5
    assert main(["train", *common, "--precision", "bf16", "--output-dir", str(bf16)]) == 0
    acc = [
        json.loads((r / "metrics.json").read_text())["validation"]["accuracy"]
        for r in (plain, bf16)
    ]
    assert acc[0] >= 0.8 and acc[1] >= acc[0] - 0.1  # bf16 learns about as well as fp32


def test_fp16_needs_a_gpu(tiny_model_dir, toy_data, tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--model",
                str(tiny_model_dir),
                "--train",
                str(toy_data["train"]),
                "--validation",
                str(toy_data["validation"]),
                "--precision",
                "fp16",
                "--output-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "needs a GPU" in capsys.readouterr().err


def _padding(batches: list[list[int]], lengths: list[int]) -> float:
    """Padded positions per real token when each batch is padded to its longest text."""
    return sum(len(b) * max(lengths[i] for i in b) for b in batches) / sum(lengths) - 1


def test_length_grouped_and_random_batches():
    """Grouped batches hold texts of similar length (little padding); --no-group-by-length
    draws random batches. Both cover every example once per epoch, deterministically for the
    seed, and change from epoch to epoch."""
    from tunelab.training.supervised import _epoch_batches

    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 129, size=800).tolist()

    for grouped in (True, False):
        one = _epoch_batches(lengths, 16, 42, grouped, None, 0)
        assert sorted(i for b in one for i in b) == list(range(800))
        assert one == _epoch_batches(lengths, 16, 42, grouped, None, 0)
        assert one != _epoch_batches(lengths, 16, 42, grouped, None, 1)
    grouped = _padding(_epoch_batches(lengths, 16, 42, True, None, 0), lengths)
    random_ = _padding(_epoch_batches(lengths, 16, 42, False, None, 0), lengths)
    assert grouped < 0.05 < 0.4 < random_, (grouped, random_)


def test_length_grouped_batches_keep_the_class_mix():
    """When length goes with the label (here: long texts are mostly class 1), sorting by length
    alone makes batches lean to one class; with the classes as strata every batch holds them
    in the data's proportions, at little more padding than length sorting alone."""
    from tunelab.training.supervised import _epoch_batches

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, size=1000)
    lengths = [int(rng.integers(60, 129) if y else rng.integers(5, 80)) for y in labels]

    def share_spread(batches):
        return float(np.std([labels[b].mean() for b in batches if len(b) == 16]))

    plain = _epoch_batches(lengths, 16, 42, True, None, 0)
    mixed = _epoch_batches(lengths, 16, 42, True, labels.tolist(), 0)
    random_ = _epoch_batches(lengths, 16, 42, False, None, 0)
    assert sorted(i for b in mixed for i in b) == list(range(1000))
    assert share_spread(plain) > 0.3  # whole batches of one class
    assert share_spread(mixed) < 0.05 < share_spread(random_)
    padded = _padding(mixed, lengths), _padding(random_, lengths)
    assert padded[0] < 0.6 * padded[1], padded
