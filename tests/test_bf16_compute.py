"""bf16 compute over fp32 master weights (tunelab.training.bf16_compute) and the allocator
setting that training applies on a CPU: outputs and gradients against fp32, tied embeddings,
the adversarial hook, and when each applies. No speed is asserted."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import method_run_config, tiny_bert_config, tiny_decoder_config
from tunelab import allocator, machine
from tunelab.methods import METHODS
from tunelab.training import bf16_compute
from tunelab.training.bf16_compute import Bf16Compute

CPU = torch.device("cpu")


def _bert(tmp_path):
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_bert_config(
        50,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=3,
        initializer_range=0.2,
    )
    return BertForSequenceClassification(cfg)


def _batch(vocab: int = 50):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (4, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}, torch.tensor([0, 1, 2, 1])


def _grads(model, forward) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    inputs, y = _batch()
    logits = forward(**inputs).logits
    torch.nn.functional.cross_entropy(logits.float(), y).backward()
    return logits, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_bf16_compute_matches_fp32_and_keeps_fp32_weights(tmp_path):
    """Activations are bf16, weights and gradients stay fp32; logits and every gradient are
    close to the fp32 ones (bf16's 8 bits of mantissa), and the forward reads the weights as
    they are now (a weight changed by the optimizer is seen on the next call)."""
    model = _bert(tmp_path)
    fp32_logits, fp32 = _grads(model, model)
    compute = Bf16Compute(model)
    logits, bf16 = _grads(model, compute)
    assert logits.dtype == torch.bfloat16 and fp32_logits.dtype == torch.float32
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert {g.dtype for g in bf16.values()} == {torch.float32}
    assert (logits.float() - fp32_logits).abs().max() < 0.05 * fp32_logits.abs().max()
    assert bf16.keys() == fp32.keys()
    flat32 = torch.cat([g.flatten() for g in fp32.values()])
    flat16 = torch.cat([bf16[n].flatten() for n in fp32])
    assert (flat16 - flat32).norm() < 0.03 * flat32.norm()
    for name, g in fp32.items():  # each tensor's direction (a key bias's gradient is ~0)
        if g.norm() > 1e-3 * flat32.norm():
            assert torch.cosine_similarity(bf16[name].flatten(), g.flatten(), 0) > 0.99, name
    # the vocabulary table is not copied: its gradient is the dense fp32 one
    assert model.bert.embeddings.word_embeddings in compute.embeddings
    with torch.no_grad():
        model.classifier.bias.add_(10.0)
    inputs, _ = _batch()
    moved = compute(**inputs).logits.float()
    assert torch.allclose(moved - logits.float(), torch.full_like(moved, 10.0), atol=0.2)


def test_tied_embeddings_are_copied_not_hooked(tmp_path):
    """A table tied to the LM head is cast like any weight (the head's matmul needs bf16) and
    its gradient, from both uses, reaches the one fp32 parameter."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    cfg = tiny_decoder_config(40, num_hidden_layers=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    compute = Bf16Compute(model)
    assert compute.embeddings == []
    ids = torch.randint(0, 40, (2, 6))
    out = compute(input_ids=ids, labels=ids)
    assert out.logits.dtype == torch.bfloat16
    out.loss.backward()
    grad = model.model.embed_tokens.weight.grad
    assert grad is not None and grad.dtype == torch.float32 and grad.abs().sum() > 0
    reference = model(input_ids=ids, labels=ids).loss
    assert abs(out.loss.item() - reference.item()) < 0.05 * reference.item()


def test_the_embedding_cast_runs_after_other_hooks(tmp_path):
    """A hook already on the embeddings (the FGM/PGD perturbation) sees fp32 and its output
    is what gets cast, so the rest of the model still runs in bf16."""
    model = _bert(tmp_path)
    seen = []

    def perturb(module, args, out):
        seen.append(out.dtype)
        return out + 1.0  # fp32 + fp32

    table = model.bert.embeddings.word_embeddings
    handle = table.register_forward_hook(perturb)
    inputs, _ = _batch()
    logits = Bf16Compute(model)(**inputs).logits
    handle.remove()
    assert seen == [torch.float32] and logits.dtype == torch.bfloat16
    assert table._forward_hooks == {}  # the cast hook is gone after the call


def test_applies_to_bf16_on_a_cpu_without_gradient_checkpointing(tmp_path):
    model = _bert(tmp_path)
    assert bf16_compute.applies(model, "bf16", CPU)
    assert not bf16_compute.applies(model, "fp32", CPU)
    assert not bf16_compute.applies(model, "bf16", torch.device("cuda"))
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    assert not bf16_compute.applies(model, "bf16", CPU)


@pytest.fixture
def fresh_allocator(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    yield
    allocator._applied = None
    allocator.retain_freed_memory()  # as training leaves this process


def test_allocator_keeps_freed_memory_on_glibc(fresh_allocator, monkeypatch):
    import platform

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    kept = "glibc, freed memory kept in training"
    assert machine.describe()["allocator"] == (kept if glibc else "system default")
    monkeypatch.setenv(allocator.ENV, "system")
    assert allocator.retain_freed_memory() is False
    assert machine.describe()["allocator"] == "system default"
    monkeypatch.delenv(allocator.ENV)
    allocator._applied = None
    assert allocator.retain_freed_memory() is glibc
    if glibc:
        assert machine.describe()["allocator"] == kept
        big = torch.ones(8 << 20)  # 32 MB: from the heap now, and still correct
        assert big.sum().item() == 8 << 20


def _rss_mb() -> float:
    from pathlib import Path

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_evaluation_gives_freed_memory_back_and_training_keeps_it(fresh_allocator):
    """Under ``released`` a freed 256 MB block goes back to the system (generation's growing
    cache would otherwise pile up on the heap); after it, freed memory is kept again."""
    import platform

    if not (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"):
        pytest.skip("glibc's mallopt only")
    assert allocator.retain_freed_memory()

    def grow_and_free() -> float:
        before = _rss_mb()
        big = torch.ones(64 << 20)  # 256 MB, touched
        assert big[-1].item() == 1.0
        del big
        return _rss_mb() - before

    with allocator.released():
        assert grow_and_free() < 64  # unmapped again on free
        with allocator.released():  # nested (evaluate -> logits): still released after it
            pass
        assert grow_and_free() < 64
    kept = grow_and_free()  # heap memory stays with the process
    assert kept > 200, kept


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_in_bf16_compute(name, learnable_model_dir, toy_data, tmp_path):
    """Each method's trainable tensors (adapters, prefixes, prompt tables, IA3 vectors) run as
    bf16 copies: a bf16 run finishes with finite losses and saves fp32 tensors."""
    from safetensors.torch import load_file

    from tunelab.training import pipeline

    out = tmp_path / "run"
    cfg = method_run_config(learnable_model_dir, toy_data, out, name, epochs=1, precision="bf16")
    pipeline.run_training(cfg, echo=lambda s: None)
    log = [line for line in (out / "train_log.jsonl").read_text().splitlines() if '"train"' in line]
    assert log and all(0 < json.loads(line)["loss"] < 100 for line in log)
    saved = {}
    for f in out.glob("*.safetensors"):
        saved |= load_file(f)
    assert saved and {t.dtype for t in saved.values() if t.is_floating_point()} == {torch.float32}
