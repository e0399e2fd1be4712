"""The fused LoRA layer (tunelab.training.fused_lora) against PEFT's own forward: the same
outputs and gradients with the same dropout masks, PEFT's code for what it does not cover,
and swapped in only inside its block."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_bert_config
from tunelab.training.fast_dropout import faster_dropout
from tunelab.training.fused_lora import fused_lora


def _lora_model(dropout: float = 0.1, **lora):
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_bert_config(
        60,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    model = BertForSequenceClassification(cfg)
    config = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=dropout,
        target_modules=["query", "key", "value", "dense"],
        **lora,
    )
    model = get_peft_model(model, config)
    with torch.no_grad():  # lora_B starts at zero: give the update something to do
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    return model


def _run(model, fused: bool, seed: int = 3):
    ids = torch.randint(1, 60, (3, 10), generator=torch.Generator().manual_seed(1))
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    with faster_dropout(), fused_lora(fused):
        logits = model(input_ids=ids).logits
    if logits.requires_grad:  # a merged adapter has nothing left to train
        logits.sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_matches_peft_with_the_same_masks(dropout, dtype):
    model = _lora_model(dropout).to(dtype).train()
    ref_logits, ref_grads = _run(model, fused=False)
    logits, grads = _run(model, fused=True)
    tol = 1e-5 if dtype == torch.float32 else 3e-2
    assert torch.allclose(logits.float(), ref_logits.float(), rtol=tol, atol=tol)
    assert grads.keys() == ref_grads.keys() and any("lora_A" in n for n in grads)
    for name, g in ref_grads.items():
        scale = g.float().abs().max().item() + 1e-6
        assert (grads[name].float() - g.float()).abs().max().item() <= tol * scale * 4, name
    if dropout:  # another seed draws other masks: the outputs change
        other, _ = _run(model, fused=True, seed=4)
        assert not torch.allclose(other, logits)


def test_what_it_does_not_cover_runs_peft(monkeypatch):
    """DoRA, a bias on lora_B and a merged adapter go to PEFT's forward unchanged."""
    from peft.tuners.lora import layer

    calls = []
    original = layer.Linear.forward
    from tunelab.training import fused_lora as module

    # the spy stands in for PEFT's forward; undone, the class gets PEFT's own back
    monkeypatch.setattr(layer.Linear, "forward", original)
    monkeypatch.setattr(
        module._swap, "original", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    for options in ({"use_dora": True}, {"lora_bias": True}):
        model = _lora_model(0.0, **options).train()
        calls.clear()
        ref, _ = _run(model, fused=False)
        got, _ = _run(model, fused=True)
        assert calls and torch.allclose(got, ref, atol=1e-6), options
    model = _lora_model(0.0).train()
    model.merge_adapter()
    calls.clear()
    _run(model, fused=True)
    assert calls


def test_it_is_swapped_in_only_inside_the_block():
    from peft.tuners.lora import layer

    from tunelab.training.fused_lora import forward

    original = layer.Linear.forward
    with fused_lora():
        assert layer.Linear.forward is forward
        with fused_lora():
            assert layer.Linear.forward is forward
    assert layer.Linear.forward is original
    with fused_lora(enabled=False):
        assert layer.Linear.forward is original
