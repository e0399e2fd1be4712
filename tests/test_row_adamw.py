"""Sparse gradients for vocabulary tables (tunelab.training.row_adamw): training with them
equals dense fused AdamW bit for bit (with clipping, weight decay and bf16 compute), the
optimizer state round-trips through a checkpoint, only the right tables switch, and the
supervised job uses them. Every test runs on both of RowAdamW's paths: tunelab's C kernels
and PyTorch's fused kernel. No speed is asserted."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_bert_config, tiny_decoder_config
from tunelab.training import row_adamw
from tunelab.training.bf16_compute import Bf16Compute
from tunelab.training.row_adamw import RowAdamW, clip_grad_norm, sparse_gradients, sparse_tables
from tunelab.training.supervised import adamw

VOCAB = 5000


pytestmark = pytest.mark.usefixtures("kernel_path")


def _bert():
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_bert_config(
        VOCAB, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3
    )
    return BertForSequenceClassification(cfg)


def _batches(n: int, repeats: bool = True):
    """Early batches use few rows, later ones the whole table; with ``repeats`` rows repeat
    within a batch, else every lookup in a batch is a different row."""
    g = torch.Generator().manual_seed(1)
    for step in range(n):
        rows = 200 if step < n // 2 else VOCAB
        if repeats:
            ids = torch.randint(0, rows, (6, 10), generator=g)
            ids[:, 3] = ids[:, 2]
        else:
            ids = torch.randperm(rows, generator=g)[:60].view(6, 10)
        yield (
            {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
            torch.randint(0, 3, (6,), generator=g),
        )


def _train(model, opt, batches, sparse: bool, bf16: bool = False) -> None:
    tables = sparse_tables(model) if sparse else []
    forward = Bf16Compute(model) if bf16 else model
    for inputs, y in batches:
        with sparse_gradients(tables):
            logits = forward(**inputs).logits
        torch.nn.functional.cross_entropy(logits.float(), y).backward()
        params = [p for p in model.parameters() if p.grad is not None]
        (clip_grad_norm if sparse else torch.nn.utils.clip_grad_norm_)(params, 0.5)
        opt.step()
        opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize(
    "bf16,repeats,live_share",
    [
        (False, False, 0.0),  # the dense buffer from the start
        (False, False, 1.1),  # live rows only, throughout
        (False, True, 0.05),  # live rows, then the buffer once 250 rows are live
        (True, False, 0.05),
        (True, True, 1.1),
    ],
)
def test_sparse_table_training_equals_dense_fused_adamw(
    bf16, repeats, live_share, kernel_path, monkeypatch
):
    """Bit for bit when no row repeats within a batch; with repeats, a row's lookups are
    summed in another order than the dense backward's (last-bit differences), so close."""
    monkeypatch.setattr(RowAdamW, "LIVE_SHARE", live_share)
    dense, sparse = _bert(), _bert()
    opt_d = adamw(dense, 3e-3, 0.01)
    opt_s = adamw(sparse, 3e-3, 0.01, rows=True)
    _train(dense, opt_d, _batches(8, repeats), sparse=False, bf16=bf16)
    _train(sparse, opt_s, _batches(8, repeats), sparse=True, bf16=bf16)
    same = torch.equal if not repeats else lambda a, b: torch.allclose(a, b, rtol=0, atol=2e-5)
    table = sparse.bert.embeddings.word_embeddings
    assert not table.sparse  # switched back after each forward
    # which path ran (the C kernel updates the table in place, no dense buffer)
    assert (id(table.weight) in opt_s._dense) == (live_share < 1 and kernel_path == "pytorch")
    assert int(opt_s._live[id(table.weight)].sum()) > 250
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters(), strict=True):
        assert same(a, b), name
        sa, sb = opt_d.state[a], opt_s.state[b]
        assert same(sa["exp_avg"], sb["exp_avg"]) and same(sa["exp_avg_sq"], sb["exp_avg_sq"])
        assert sa["step"].item() == sb["step"].item()


def _train_folded(model, opt, batches, sparse: bool, max_norm: float = 0.5) -> list[float]:
    """Clipping folded into the fused step: RowAdamW.clip_grad_norm_ for the sparse model;
    for the dense one the same thing by hand (torch's norm, the fused kernel's grad_scale)."""
    tables = sparse_tables(model) if sparse else []
    norms = []
    for inputs, y in batches:
        with sparse_gradients(tables):
            logits = model(**inputs).logits
        torch.nn.functional.cross_entropy(logits, y).backward()
        params = [p for p in model.parameters() if p.grad is not None]
        if sparse:
            norms.append(float(opt.clip_grad_norm_(params, max_norm)))
        else:
            # the norm as RowAdamW measures it (tunelab's kernels sum in double)
            total, coef = row_adamw._clip_coef([p.grad for p in params], max_norm, kernels=True)
            opt.grad_scale = (1.0 / coef).float() if coef < 1 else None
            norms.append(float(total))
        opt.step()
        opt.grad_scale = None
        opt.zero_grad(set_to_none=True)
    return norms


@pytest.mark.parametrize("live_share", [0.0, 1.1, 0.05])
def test_clipping_inside_the_fused_step_equals_the_fused_kernels_own_scaling(
    live_share, monkeypatch
):
    """RowAdamW.clip_grad_norm_ leaves the scaling to the next step: bit for bit what dense
    fused AdamW does with the same grad_scale, and within float32 rounding of torch's
    clip_grad_norm_ (which multiplies by the factor instead of dividing by its inverse)."""
    monkeypatch.setattr(RowAdamW, "LIVE_SHARE", live_share)
    dense, sparse, clipped = _bert(), _bert(), _bert()
    opt_d = adamw(dense, 3e-3, 0.01)
    opt_s = adamw(sparse, 3e-3, 0.01, rows=True)
    n_d = _train_folded(dense, opt_d, _batches(8, repeats=False), sparse=False)
    n_s = _train_folded(sparse, opt_s, _batches(8, repeats=False), sparse=True)
    assert n_d == pytest.approx(n_s, rel=1e-5) and max(n_s) > 0.5  # clipping happened
    _train(clipped, adamw(clipped, 3e-3, 0.01), _batches(8, repeats=False), sparse=False)
    for (name, a), b, c in zip(
        dense.named_parameters(), sparse.parameters(), clipped.parameters(), strict=True
    ):
        assert torch.equal(a, b), name
        assert torch.allclose(b, c, rtol=0, atol=1e-5), name


def test_after_the_step_the_gradients_are_the_clipped_ones():
    model = _bert()
    opt = adamw(model, 3e-3, 0.01, rows=True)
    inputs, y = next(_batches(1))
    with sparse_gradients(sparse_tables(model)):
        loss = torch.nn.functional.cross_entropy(model(**inputs).logits, y)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    before = [p.grad.to_dense().clone() for p in params]
    total = float(opt.clip_grad_norm_(params, 0.01))
    assert total > 0.01
    opt.step()
    assert opt.grad_scale is None  # one step only
    for p, g in zip(params, before, strict=True):
        assert torch.allclose(p.grad.to_dense(), g * (0.01 / (total + 1e-6)), atol=1e-8)


def test_a_checkpoint_of_the_optimizer_resumes_to_the_same_weights():
    """State saved after 4 steps and loaded into a fresh optimizer continues exactly as the
    uninterrupted run; the state has torch's AdamW layout (a plain AdamW can load it)."""
    whole = _bert()
    opt = adamw(whole, 3e-3, 0.01, rows=True)
    _train(whole, opt, _batches(8), sparse=True)

    first = _bert()
    opt1 = adamw(first, 3e-3, 0.01, rows=True)
    batches = list(_batches(8))
    _train(first, opt1, batches[:4], sparse=True)
    saved_model = {k: v.clone() for k, v in first.state_dict().items()}
    saved_opt = opt1.state_dict()
    adamw(_bert(), 3e-3, 0.01).load_state_dict(saved_opt)

    resumed = _bert()
    resumed.load_state_dict(saved_model)
    opt2 = adamw(resumed, 3e-3, 0.01, rows=True)
    opt2.load_state_dict(saved_opt)
    _train(resumed, opt2, batches[4:], sparse=True)
    for a, b in zip(whole.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(a, b)


def test_clip_grad_norm_takes_sparse_and_dense_gradients_together():
    dense, sparse = _bert(), _bert()
    inputs, y = next(_batches(1))
    norms = []
    for model, tables, clip in (
        (dense, [], torch.nn.utils.clip_grad_norm_),
        (sparse, sparse_tables(sparse), clip_grad_norm),
    ):
        with sparse_gradients(tables):
            loss = torch.nn.functional.cross_entropy(model(**inputs).logits, y)
        loss.backward()
        norms.append(float(clip([p for p in model.parameters() if p.grad is not None], 0.1)))
    assert sparse.bert.embeddings.word_embeddings.weight.grad.is_sparse
    assert norms[0] == pytest.approx(norms[1], rel=1e-5) and norms[0] > 0.1
    g_dense = dense.bert.embeddings.word_embeddings.weight.grad
    g_sparse = sparse.bert.embeddings.word_embeddings.weight.grad.to_dense()
    assert torch.allclose(g_dense, g_sparse, atol=1e-7)
    total = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in dense.parameters() if p.grad is not None])
    )
    assert float(total) == pytest.approx(0.1, rel=1e-4)  # clipped to the bound


def test_which_tables_switch_to_sparse_gradients():
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification

    bert = _bert()
    assert sparse_tables(bert) == [bert.bert.embeddings.word_embeddings]  # not positions
    bert.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    assert sparse_tables(bert) == []  # frozen (LoRA and the other adapters)
    tied = LlamaForCausalLM(tiny_decoder_config(VOCAB, tie_word_embeddings=True))
    assert sparse_tables(tied) == []  # the LM head reads the table densely
    head = LlamaForSequenceClassification(tiny_decoder_config(VOCAB, num_labels=2))
    assert sparse_tables(head) == [head.model.embed_tokens]
    small = LlamaForSequenceClassification(tiny_decoder_config(row_adamw.MIN_ROWS - 1))
    assert sparse_tables(small) == []
    table = head.model.embed_tokens
    with pytest.raises(RuntimeError), sparse_gradients([table]):
        assert table.sparse
        raise RuntimeError
    assert table.sparse is False  # restored on an exception too


def test_the_supervised_job_trains_the_table_with_sparse_gradients():
    from tunelab.training.supervised import StepSettings, supervised_job

    model = _bert()
    g = torch.Generator().manual_seed(2)
    ids = [torch.randint(1, VOCAB, (8,), generator=g).tolist() for _ in range(12)]
    labels = [i % 3 for i in range(12)]
    job = supervised_job(
        model,
        ids,
        labels,
        0,
        torch.nn.functional.cross_entropy,
        StepSettings(batch_size=4, learning_rate=1e-3, weight_decay=0.01),
    )
    assert isinstance(job.optimizers[0], RowAdamW)
    before = model.bert.embeddings.word_embeddings.weight.detach().clone()
    for i, batch in enumerate(job.batches(0)):
        job.step(batch, i)
    after = model.bert.embeddings.word_embeddings.weight
    used = torch.tensor(sorted({t for row in ids for t in row}))
    assert (after[used] != before[used]).any(1).all()  # every looked-up row moved
    assert not model.bert.embeddings.word_embeddings.sparse
