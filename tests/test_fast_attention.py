"""tunelab.training.fast_attention: attention's scale, mask, softmax and dropout in one C pass
per row (bf16, AVX-512). Its probabilities match a float32 softmax within bf16 rounding, its
dropout mask is fast_dropout's for the same seed (kept values bit for bit), its gradient
matches autograd's; a model switched to it computes what its eager attention computes (with
the same dropout masks from the same seed); everything it does not cover goes to the eager
code unchanged. On a CPU without AVX-512 the kernel is not built and a model is left as it is
(tested there by the same tests' fallback branch)."""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel, LlamaConfig, LlamaModel

from tunelab.training import fast_attention, fast_dropout
from tunelab.training.fast_attention import _Attention, _Chain

NEG = torch.finfo(torch.bfloat16).min
needs_kernel = pytest.mark.skipif(
    not fast_attention.available(), reason="checked by test_without_the_kernel_a_model_stays"
)
needs_whole = pytest.mark.skipif(  # AVX-512 with BF16 dot products (test_the_kernel_is_there)
    not fast_attention.fused_available(), reason="no AVX-512 BF16 on this CPU"
)


def _mask(b: int, q: int, k: int, lengths: list[int], full: bool) -> torch.Tensor:
    """An eager additive mask: 0 for a real key, bf16's minimum for padding."""
    m = torch.zeros(b, 1, q if full else 1, k, dtype=torch.bfloat16)
    for i, n in enumerate(lengths):
        m[i, ..., n:] = NEG
    return m


@needs_kernel
@pytest.mark.parametrize("keys", [1, 15, 16, 17, 27, 51, 130])
@pytest.mark.parametrize("full", [True, False])
def test_probabilities_match_a_float32_softmax(keys, full):
    torch.manual_seed(keys)
    b, h = 3, 4
    s = (torch.randn(b, h, keys, keys) * 4).bfloat16()
    mask = _mask(b, keys, keys, [keys, max(1, keys // 2), max(1, keys - 3)], full)
    p = _Chain.apply(s, mask, 0.25, 0.0)
    ref = torch.softmax(s.float() * 0.25 + mask.float(), -1)
    assert p.dtype == torch.bfloat16 and p.shape == s.shape
    assert (p.float() - ref).abs().max() <= 2**-8  # within bf16 rounding of values <= 1
    assert torch.allclose(p.float().sum(-1), torch.ones(b, h, keys), atol=2e-2)
    assert torch.all(p[0, :, :, keys:] == 0)


@needs_kernel
def test_no_mask_and_a_single_query_row():
    torch.manual_seed(1)
    s = torch.randn(2, 3, 1, 40).bfloat16()  # one query over 40 keys (a decoding step)
    p = _Chain.apply(s, None, 1.0, 0.0)
    assert (p.float() - torch.softmax(s.float(), -1)).abs().max() <= 2**-8


@needs_kernel
@pytest.mark.parametrize("keys", [7, 29, 64])
def test_dropout_is_fast_dropouts_mask_for_the_same_seed(keys):
    torch.manual_seed(2)
    s = torch.randn(4, 2, keys, keys).bfloat16()
    mask = _mask(4, keys, keys, [keys, 5, keys - 1, 3], True)
    torch.manual_seed(7)
    d = _Chain.apply(s, mask, 0.5, 0.1)
    torch.manual_seed(7)  # the chain drew its seed as fast_dropout draws one
    p = _Chain.apply(s, mask, 0.5, 0.0)
    expected = fast_dropout._native_apply(p, fast_dropout._seed(), 0.1)
    assert torch.equal(d, expected)  # the same mask, and bf16(bf16(p) / 0.9) where kept
    assert abs((d[p != 0] == 0).float().mean().item() - 0.1) < 0.03


@needs_kernel
@pytest.mark.parametrize("p", [0.0, 0.2])
def test_the_gradient_matches_autograd(p):
    torch.manual_seed(3)
    keys = 33
    s = (torch.randn(2, 3, keys, keys) * 2).bfloat16().requires_grad_()
    mask = _mask(2, keys, keys, [keys, 20], True)
    torch.manual_seed(5)
    out = _Chain.apply(s, mask, 0.3, p)
    g = torch.randn_like(out)
    out.backward(g)
    keep = (out != 0).float() if p else torch.ones_like(out, dtype=torch.float32)
    ref_s = s.detach().float().requires_grad_()
    ref = torch.softmax(ref_s * 0.3 + mask.float(), -1) * keep / (1 - p)
    ref.backward(g.float())
    assert s.grad is not None and s.grad.dtype == torch.bfloat16
    err = (s.grad.float() - ref_s.grad).abs().max() / ref_s.grad.abs().max()
    assert err < 1e-2


@needs_whole
@pytest.mark.parametrize(
    "b,h,g,n,d,p",
    [(3, 4, 4, 27, 32, 0.0), (3, 4, 4, 27, 32, 0.1), (2, 4, 2, 33, 64, 0.2), (2, 2, 1, 1, 32, 0.0)],
)
def test_the_whole_attention_matches_float32_with_fast_dropouts_mask(b, h, g, n, d, p):
    torch.manual_seed(n + d)
    # Q, K, V as views of the projections' output, as a model hands them over (no copy)
    q, k, v = (
        torch.randn(b, n, x * d).bfloat16().view(b, n, x, d).transpose(1, 2) for x in (h, g, g)
    )
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    mask = _mask(b, n, n, [n] + [max(1, n - 5 * i) for i in range(1, b)], True)
    torch.manual_seed(3)
    out, probs = _Attention.apply(q, k, v, mask, d**-0.5, p)
    grad = torch.randn_like(out)
    out.backward(grad)
    torch.manual_seed(3)  # the kernel's seed, and fast_dropout's mask for it
    keep = fast_dropout._native_apply(torch.ones_like(probs), fast_dropout._seed(), p) != 0
    qf, kf, vf = (t.detach().float().requires_grad_() for t in (q, k, v))
    kr, vr = (t.repeat_interleave(h // g, 1) for t in (kf, vf))
    pr = torch.softmax(qf @ kr.transpose(2, 3) * d**-0.5 + mask.float(), -1)
    ref = ((pr * keep / (1 - p)) @ vr).transpose(1, 2)
    ref.backward(grad.float())
    assert out.shape == (b, n, h, d) and probs.shape == (b, h, n, n)
    assert (probs.float() - pr).abs().max() <= 2**-8

    def rel(a: torch.Tensor, r: torch.Tensor) -> float:
        return ((a.float() - r).abs().max() / r.abs().max().clamp_min(1e-6)).item()

    assert rel(out, ref) < 2e-2
    for got, want in ((q.grad, qf.grad), (k.grad, kf.grad), (v.grad, vf.grad)):
        assert got is not None and got.shape == want.shape and rel(got, want) < 2e-2


def _bert(dropout: float, head_dim: int = 16) -> BertModel:
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=4 * head_dim,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        attention_probs_dropout_prob=dropout,
        hidden_dropout_prob=0.0,
        attn_implementation="eager",
    )
    return BertModel(cfg).to(torch.bfloat16)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, 100, (4, 23), generator=torch.Generator().manual_seed(4))
    att = torch.ones_like(ids)
    att[1, 15:] = 0
    att[3, 4:] = 0
    return ids, att


@needs_kernel
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("head_dim", [16, 32])  # the chain alone; the whole attention (BF16)
def test_a_bert_model_computes_what_its_eager_attention_computes(train, head_dim):
    ids, att = _batch()
    outs, grads = [], []
    for fused in (False, True):
        model = _bert(0.3 if train else 0.0, head_dim).train(train)
        if fused:
            assert fast_attention.use(model)
            assert model.config._attn_implementation == fast_attention.NAME
        torch.manual_seed(11)  # the same seeds: the same dropout masks on both paths
        with fast_dropout.faster_dropout():
            out = model(input_ids=ids, attention_mask=att).last_hidden_state
        # a fixed random projection (the sum of a LayerNorm's squares is nearly constant, so
        # its gradient would be rounding noise)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(9))
        (out.float() * weights).sum().backward()
        outs.append(out.detach().float())
        grads.append(model.encoder.layer[0].attention.self.query.weight.grad.float())
    diff = (outs[0] - outs[1])[att.bool()].abs()
    # bf16 activations through two layers: within a few bf16 steps of each other (measured:
    # equal); a mask drawn from another seed moves the mean by 0.007 and the max by 0.05
    assert diff.max() <= 2**-5 and diff.mean() < 1e-3
    cos = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), 0)
    assert cos > 0.999  # measured 1.0000 for both paths against float32 too


@needs_kernel
@pytest.mark.parametrize("head_dim", [16, 32])
def test_grouped_key_value_heads_are_shared_as_the_eager_code_does(head_dim):
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=4 * head_dim,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="eager",
    )
    ids, att = _batch()
    outs = []
    for fused in (False, True):
        torch.manual_seed(0)
        model = LlamaModel(cfg).to(torch.bfloat16).eval()
        if fused:
            assert fast_attention.use(model)
        with torch.no_grad():
            outs.append(model(input_ids=ids, attention_mask=att).last_hidden_state.float())
    real = att.bool()
    assert (outs[0] - outs[1])[real].abs().max() < 0.1


def test_what_the_kernel_does_not_cover_goes_to_the_eager_code_unchanged():
    model = _bert(0.0)
    att = model.encoder.layer[0].attention.self
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 4, 9, 16) for _ in range(3))  # float32: not the kernel's
    mask = torch.zeros(2, 1, 9, 9)
    got = fast_attention.attention(att, q, k, v, mask, scaling=0.25)
    from transformers.models.bert.modeling_bert import eager_attention_forward

    want = eager_attention_forward(att, q, k, v, mask, scaling=0.25)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    qb, kb, vb, mb = (t.bfloat16() for t in (q, k, v, mask))
    assert not fast_attention._fits(qb, kb, mb, {"softcap": 30.0})  # a soft cap
    assert not fast_attention._fits(qb, kb, mb.bool(), {})  # a boolean mask
    assert not fast_attention._fits(qb, kb, mb[..., :1], {})  # broadcast over the keys
    assert fast_attention._fits(qb, kb, mb, {}) == fast_attention.available()


def test_the_kernel_is_there_exactly_where_the_cpu_has_avx512():
    flags: set[str] = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert fast_attention.available() == ({"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags)


def test_without_the_kernel_a_model_stays_eager(monkeypatch):
    from tunelab import native

    monkeypatch.setattr(native, "library", lambda: None)  # TUNELAB_NATIVE=0, or no compiler
    model = _bert(0.0)
    assert not fast_attention.use(model)
    assert model.config._attn_implementation == "eager"


@needs_kernel
def test_a_saved_model_does_not_name_tunelabs_attention(tmp_path):
    model = _bert(0.0)
    assert fast_attention.use(model)
    model.save_pretrained(tmp_path)  # loadable where tunelab's attention is not registered
    assert fast_attention.NAME not in (tmp_path / "config.json").read_text()
