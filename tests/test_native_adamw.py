"""AdamW through tunelab's C kernels (tunelab.training.native_adamw) and the kept bf16
compute copies it serves: bit for bit torch's fused AdamW (fp32 or bf16 gradients, gradient
scaling, weight decay, either lerp branch), the copies equal the new weights cast to bf16,
clipping's sum of squares, and training with kept copies equal to training with a cast per
step, also through the supervised job. No speed is asserted."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_bert_config
from tunelab import native
from tunelab.training import native_adamw
from tunelab.training.bf16_compute import Bf16Compute
from tunelab.training.row_adamw import RowAdamW, sparse_gradients, sparse_tables
from tunelab.training.supervised import adamw

# sizes whose last (size % 16) elements are under 8: PyTorch's kernel leaves the same
# elements to its scalar loop whether its vectors hold 8 floats (AVX2) or 16 (AVX-512)
SIZES = [5, 16, 37, 4099, 65536 + 7, 384 * 1536]


@pytest.fixture(autouse=True)
def kernels():
    assert native.library() is not None, "tunelab's C kernels did not build"


def _torch_step(weights, grads, exp_avgs, exp_avg_sqs, steps, group, scale):
    """torch's fused AdamW, the reference (counts the step first, as torch.optim does)."""
    torch._foreach_add_(steps, 1.0)
    torch._fused_adamw_(
        weights,
        grads,
        exp_avgs,
        exp_avg_sqs,
        [],
        steps,
        lr=group["lr"],
        beta1=group["betas"][0],
        beta2=group["betas"][1],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        amsgrad=False,
        maximize=False,
        grad_scale=torch.tensor(scale) if scale != 1 else None,
    )


def _state(start):
    return (
        [p.clone() for p in start],
        [torch.zeros_like(p) for p in start],
        [torch.zeros_like(p) for p in start],
    )


@pytest.mark.parametrize("grad_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weight_decay,beta1", [(0.01, 0.9), (0.0, 0.3)])
def test_dense_step_equals_torch_fused_adamw_bit_for_bit(grad_dtype, weight_decay, beta1):
    torch.manual_seed(0)
    group = {"lr": 3e-3, "weight_decay": weight_decay, "betas": (beta1, 0.999), "eps": 1e-8}
    start = [torch.randn(n) for n in SIZES]
    ours, ref = _state(start), _state(start)
    steps = [torch.zeros(()) for _ in SIZES]
    copies = [torch.empty(n, dtype=torch.bfloat16) for n in SIZES]
    for step in range(1, 7):
        grads = [torch.randn(n).to(grad_dtype) for n in SIZES]
        scale = 2.5 if step % 2 else 1.0  # clipping on every other step
        ref_grads = [g.float() for g in grads]  # widening bf16 is exact
        our_grads = [g.clone() for g in grads]
        _torch_step(ref[0], ref_grads, ref[1], ref[2], steps, group, scale)
        native_adamw.dense_step(
            group, list(zip(*ours, our_grads, copies, strict=True)), float(step), scale
        )
        for name, a, b in zip(("weight", "exp_avg", "exp_avg_sq"), ours, ref, strict=True):
            for x, y in zip(a, b, strict=True):
                assert torch.equal(x, y), (name, step, x.numel())
        for p, c in zip(ours[0], copies, strict=True):
            assert torch.equal(c, p.to(torch.bfloat16))
        if grad_dtype == torch.float32:  # fp32 gradients come back scaled, as torch's do
            for g, r in zip(our_grads, ref_grads, strict=True):
                assert torch.equal(g, r)


def test_sum_squares_of_fp32_and_bf16_tensors():
    torch.manual_seed(1)
    xs = [torch.randn(3000), torch.randn(40000).bfloat16(), torch.randn(64, 9).t(), torch.ones(0)]
    want = sum(float((x.double() ** 2).sum()) for x in xs)
    assert native_adamw.sum_squares(xs) == pytest.approx(want, rel=1e-12)
    assert native_adamw.sum_squares([]) == 0.0


VOCAB = 5000


def _bert():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_bert_config(
        VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3
    )
    return BertForSequenceClassification(cfg)


def _batches(n: int):
    g = torch.Generator().manual_seed(1)
    for _ in range(n):
        ids = torch.randint(0, VOCAB, (6, 10), generator=g)
        yield (
            {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
            torch.randint(0, 3, (6,), generator=g),
        )


def _train(model, batches, kept: bool) -> Bf16Compute:
    opt = adamw(model, 3e-3, 0.01, rows=True)
    compute = Bf16Compute(model, copies=kept)
    if kept:
        opt.use_compute_copies(compute.pairs())
    tables = sparse_tables(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    for inputs, y in batches:
        with sparse_gradients(tables):
            logits = compute(**inputs).logits
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        if kept:  # the gradients are on the copies, in bf16
            assert all(p.grad is None for p, _ in compute.pairs())
            assert all(c.grad.dtype == torch.bfloat16 for _, c in compute.pairs())
        opt.clip_grad_norm_(trainable, 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if kept:
            for p, c in compute.pairs():
                assert torch.equal(c, p.detach().to(torch.bfloat16))
                assert c.grad is None
    return compute


def test_kept_copies_train_exactly_as_a_cast_per_step():
    """The kept copies' bf16 gradients widened in the kernel are the cast path's fp32
    gradients exactly, so the weights and moments come out bit for bit the same."""
    cast, kept = _bert(), _bert()
    _train(cast, _batches(6), kept=False)
    _train(kept, _batches(6), kept=True)
    for (name, a), b in zip(cast.named_parameters(), kept.parameters(), strict=True):
        assert torch.equal(a, b), name


def test_a_weight_changed_outside_the_optimizer_is_cast_again():
    model = _bert()
    compute = _train(model, _batches(2), kept=True)
    weight = model.classifier.weight
    with torch.no_grad():
        weight.mul_(2.0)  # a restored checkpoint, the best weights: an in-place change
    inputs, _ = next(_batches(1))
    got = compute(**inputs).logits
    want = Bf16Compute(model)(**inputs).logits  # casts every weight afresh
    assert torch.equal(got, want)
    copy = dict((id(p), c) for p, c in compute.pairs())[id(weight)]
    assert torch.equal(copy, weight.detach().to(torch.bfloat16))


def test_the_supervised_job_keeps_copies_only_for_one_backward_per_step(monkeypatch):
    """bf16 with RowAdamW: copies kept, and the weights equal a run that casts per step
    (dropout on: the masks come from the same seed); with gradient accumulation or a
    regularizer on the weights, none."""
    from tunelab.training import supervised
    from tunelab.training.supervised import StepSettings, supervised_job

    def run(accumulation: int, keep: bool | None = None, penalty: bool = False):
        torch.manual_seed(3)
        from transformers import BertForSequenceClassification

        model = BertForSequenceClassification(tiny_bert_config(VOCAB, num_labels=3))
        g = torch.Generator().manual_seed(2)
        ids = [torch.randint(1, VOCAB, (8,), generator=g).tolist() for _ in range(16)]
        if keep is not None:
            monkeypatch.setattr(supervised, "_keep_copies", lambda *a: keep)
        job = supervised_job(
            model,
            ids,
            [i % 3 for i in range(16)],
            0,
            torch.nn.functional.cross_entropy,
            StepSettings(
                batch_size=4,
                learning_rate=1e-3,
                weight_decay=0.01,
                precision="bf16",
                gradient_accumulation_steps=accumulation,
            ),
            # EWC-like: a penalty on the fp32 weights themselves, past any copy
            regularizer=(lambda: 1e-3 * model.classifier.weight.square().sum())
            if penalty
            else None,
        )
        torch.manual_seed(4)
        for i, batch in enumerate(job.batches(0)):
            job.step(batch, i)
        monkeypatch.undo()
        return model, job.optimizers[0]

    kept_model, kept_opt = run(1)
    assert isinstance(kept_opt, RowAdamW) and kept_opt._copies
    cast_model, cast_opt = run(1, keep=False)
    assert not cast_opt._copies
    for (name, a), b in zip(kept_model.named_parameters(), cast_model.parameters(), strict=True):
        assert torch.equal(a, b), name
    _, accumulating = run(2)
    assert not accumulating._copies
    _, regularized = run(1, penalty=True)
    assert not regularized._copies
