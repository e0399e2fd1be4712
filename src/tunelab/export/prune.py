"""Pruning for export: unstructured magnitude pruning and attention-head pruning.

- ``magnitude``: in every Linear layer of the encoder body (not embeddings, not the task
  head) the smallest-magnitude weights are set to zero, the same fraction in each layer.
- ``heads``: attention heads are ranked by importance on labelled data (Michel et al., 2019,
  "Are Sixteen Heads Really Better than One?": the gradient of the loss with respect to a
  gate on each head's output, summed in absolute value over the data) and the least important
  fraction is removed, keeping at least one head per layer. A removed head's columns of the
  attention output projection are zeroed, which is exactly removing the head; for ONNX the
  query/key/value/output matrices are also sliced (:func:`slice_pruned_heads`), so the graph
  really computes fewer heads.

Head pruning needs the BERT-style attention layout (``attention.self.query/key/value`` and
``attention.output.dense``: BERT, RoBERTa, XLM-R, MiniLM, ELECTRA); other architectures get a
clear error.
"""

from __future__ import annotations

from typing import Protocol, cast

import torch

from tunelab.errors import TunelabError

PRUNE_KINDS = ("magnitude", "heads")


def prunable_linears(model: torch.nn.Module, head_names: list[str]) -> dict[str, torch.nn.Linear]:
    """Linear layers of the body: excludes embeddings and the task head."""
    out = {}
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or "embed" in name:
            continue
        if any(name == h or name.startswith(h + ".") or name.endswith("." + h) for h in head_names):
            continue
        out[name] = mod
    return out


@torch.no_grad()
def magnitude_prune(model: torch.nn.Module, sparsity: float, head_names: list[str]) -> float:
    """Zero the ``sparsity`` fraction of smallest |w| in each body Linear. Returns the
    achieved sparsity over those weights."""
    zeros = total = 0
    for mod in prunable_linears(model, head_names).values():
        w = mod.weight
        k = int(round(sparsity * w.numel()))
        if k > 0:
            threshold = w.abs().flatten().kthvalue(k).values
            w.masked_fill_(w.abs() <= threshold, 0.0)
        zeros += int((w == 0).sum())
        total += w.numel()
    return zeros / max(total, 1)


class _SelfAttention(Protocol):
    """What head pruning uses of a BERT-style ``attention.self``."""

    query: torch.nn.Linear
    key: torch.nn.Linear
    value: torch.nn.Linear
    attention_head_size: int


class _AttentionOutput(Protocol):
    dense: torch.nn.Linear


class AttentionBlock(Protocol):
    """A BERT-style ``...attention`` module: ``.self.query/key/value``, ``.output.dense``."""

    self: _SelfAttention
    output: _AttentionOutput


def attention_layers(model: torch.nn.Module) -> list[AttentionBlock]:
    """The attention blocks (``...attention`` with ``.self`` and ``.output``), in order."""
    layers = [
        m
        for n, m in model.named_modules()
        if n.endswith("attention")
        and hasattr(m, "self")
        and hasattr(m, "output")
        and hasattr(m.self, "query")
        and hasattr(m.output, "dense")
    ]
    if not layers:
        raise TunelabError(
            f"head pruning supports BERT-style encoders (BERT, RoBERTa, "
            f"XLM-R, MiniLM); {type(model).__name__} has no such attention "
            "blocks: use --prune magnitude"
        )
    # the hasattr checks above are the structural test for the BERT layout
    return cast("list[AttentionBlock]", layers)


def _head_size(att: AttentionBlock) -> int:
    return int(att.self.attention_head_size)


def head_importance(model: torch.nn.Module, batches, loss_fn) -> torch.Tensor:
    """(layers, heads) importance: |d loss / d gate| summed over ``batches``.

    Args:
        batches: iterable of (model inputs dict, targets).
        loss_fn: (model output, targets) -> scalar loss.
    """
    layers = attention_layers(model)
    heads = [att.output.dense.in_features // _head_size(att) for att in layers]
    gates = [torch.ones(h, requires_grad=True) for h in heads]
    hooks = []
    for att, gate in zip(layers, gates, strict=True):
        size = _head_size(att)

        def pre(mod, args, gate=gate, size=size):
            x = args[0]
            shaped = x.view(*x.shape[:-1], -1, size) * gate.view(-1, 1)
            return (shaped.view(x.shape),)

        hooks.append(att.output.dense.register_forward_pre_hook(pre))
    was_training = model.training
    model.eval()
    try:
        for inputs, targets in batches:
            loss_fn(model(**inputs), targets).backward()
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    width = max(heads)
    out = torch.full((len(layers), width), float("inf"))  # absent heads never chosen
    for i, g in enumerate(gates):
        out[i, : heads[i]] = g.grad.abs() if g.grad is not None else 0.0
    return out


def choose_heads(importance: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """The least important ``fraction`` of all heads, at least one head left per layer."""
    finite = torch.isfinite(importance)
    total = int(finite.sum())
    want = int(round(fraction * total))
    order = sorted(((float(importance[i, j]), i, j) for i, j in finite.nonzero().tolist()))
    left = finite.sum(dim=1).tolist()
    chosen: dict[int, list[int]] = {}
    for _, i, j in order:
        if want == 0:
            break
        if left[i] > 1:
            chosen.setdefault(i, []).append(j)
            left[i] -= 1
            want -= 1
    return {i: sorted(js) for i, js in sorted(chosen.items())}


@torch.no_grad()
def mask_heads(model: torch.nn.Module, heads: dict[int, list[int]]) -> None:
    """Remove heads by zeroing their columns of the attention output projection (and their
    value rows): the model keeps its shapes, so it still loads with plain Transformers."""
    layers = attention_layers(model)
    for i, js in heads.items():
        att, size = layers[i], _head_size(layers[i])
        for j in js:
            cols = slice(j * size, (j + 1) * size)
            att.output.dense.weight[:, cols] = 0.0
            att.self.value.weight[cols] = 0.0
            if att.self.value.bias is not None:
                att.self.value.bias[cols] = 0.0


@torch.no_grad()
def slice_pruned_heads(model: torch.nn.Module, heads: dict[int, list[int]]) -> None:
    """Physically drop heads: slice query/key/value rows and output-projection columns. The
    attention code infers the head count from the tensor size, so the forward pass (and an
    ONNX graph traced from it) computes only the heads that are left."""
    layers = attention_layers(model)
    for i, js in heads.items():
        att, size = layers[i], _head_size(layers[i])
        n = att.output.dense.in_features // size
        keep = torch.tensor(
            [c for h in range(n) if h not in js for c in range(h * size, (h + 1) * size)]
        )
        for name in ("query", "key", "value"):
            old = getattr(att.self, name)
            new = torch.nn.Linear(old.in_features, len(keep), bias=old.bias is not None)
            new.weight.copy_(old.weight[keep])
            if old.bias is not None:
                new.bias.copy_(old.bias[keep])
            setattr(att.self, name, new)
        old = att.output.dense
        new = torch.nn.Linear(len(keep), old.out_features, bias=old.bias is not None)
        new.weight.copy_(old.weight[:, keep])
        if old.bias is not None:
            new.bias.copy_(old.bias)
        att.output.dense = new
        for attr in ("num_attention_heads", "all_head_size"):
            if hasattr(att.self, attr):
                setattr(
                    att.self, attr, (n - len(js)) if attr == "num_attention_heads" else len(keep)
                )


def count_heads(model: torch.nn.Module) -> int:
    return sum(att.output.dense.in_features // _head_size(att) for att in attention_layers(model))
