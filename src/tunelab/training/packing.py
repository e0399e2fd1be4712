"""Packed training batches for decoder sequence classification: random batches at the cost of
length-grouped ones.

A random batch of texts padded to its longest wastes most of a CPU's step on pad tokens (2.6x
the real tokens on 1,000 Chinese reviews); grouping texts of similar length removes the padding
but changes what the model sees per step (a decoder + LoRA at a high learning rate followed the
lengths: ``bench/README.md``). Packing keeps the random batch and removes the padding: the
batch's token sequences are laid end to end in a few rows (first-fit decreasing, rows as wide as
the batch's longest text), each sequence's positions restart at 0, and Transformers builds the
block-diagonal causal mask from those positions (its packed-sequence format; no attention crosses
from one text to another). The head's per-token scores are read at each text's last token, which
is where ``*ForSequenceClassification`` pools a right-padded text, so a packed batch gives the
logits and gradients of the same batch padded, within float rounding.
"""

from __future__ import annotations

from typing import Any, cast

import torch


def pack_rows(lengths: list[int], width: int) -> list[list[int]]:
    """Positions in ``lengths`` per row, first-fit decreasing; every row's total <= ``width``
    (``width`` >= the longest length)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(width - lengths[i])
    return rows


def collate_packed(seqs: list[list[int]], pad_id: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Inputs for the packed rows and, per sequence in ``seqs``' order, the flat index
    (row * width + column) of its last token."""
    width = max(len(s) for s in seqs)
    rows = pack_rows([len(s) for s in seqs], width)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    ends = torch.empty(len(seqs), dtype=torch.long)
    for r, members in enumerate(rows):
        col = 0
        for i in members:
            n = len(seqs[i])
            input_ids[r, col : col + n] = torch.tensor(seqs[i], dtype=torch.long)
            position_ids[r, col : col + n] = torch.arange(n)
            ends[i] = r * width + col + n - 1
            col += n
        # the tail's pad tokens form one more sequence (positions from 0): no text sees them
        position_ids[r, col:] = torch.arange(width - col)
    return {"input_ids": input_ids, "position_ids": position_ids, "use_cache": False}, ends


def score_module(model: torch.nn.Module) -> torch.nn.Module | None:
    """The sequence head of a decoder ``*ForSequenceClassification`` (pooled at the last
    token), through PEFT's wrappers; None for anything else."""
    from transformers.modeling_layers import GenericForSequenceClassification

    inner = cast("Any", model).get_base_model() if hasattr(model, "peft_config") else model
    if not isinstance(inner, GenericForSequenceClassification):
        return None
    return getattr(inner, "score", None)


def applies(model: torch.nn.Module, adversarial: bool = False) -> bool:
    """Packing needs a decoder sequence head reached directly or through a PEFT model whose
    method works token by token: prompt methods and tunelab's prefix wrapper prepend virtual
    tokens to each row, and the embedding attacks perturb the padded batch's real tokens."""
    if adversarial or score_module(model) is None:
        return False
    peft = getattr(model, "peft_config", None)
    if peft is None:
        return True
    return not any(getattr(c, "is_prompt_learning", False) for c in peft.values())


class PackedScores:
    """Registers a hook on the sequence head that keeps its per-token output, and reads the
    scores of each text's last token from it."""

    def __init__(self, model: torch.nn.Module):
        head = score_module(model)
        assert head is not None
        self._out: torch.Tensor | None = None
        self._handle = head.register_forward_hook(self._keep)

    def _keep(self, _module, _args, output: torch.Tensor) -> None:
        self._out = output

    def take(self, ends: torch.Tensor) -> torch.Tensor:
        assert self._out is not None
        out, self._out = self._out, None
        return out.reshape(-1, out.shape[-1])[ends.to(out.device)]

    def close(self) -> None:
        self._handle.remove()
