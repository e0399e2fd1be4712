"""Tokenise once, then batch by length: most of a CPU's training time otherwise goes to padding.

Training batches are "length-grouped": indices are shuffled, cut into chunks of
``batch_size * group``, each chunk is sorted by length and cut into batches, and the batch order
is shuffled again. Batches stay random in content but hold texts of similar length, so the padded
tensor (batch, longest) carries few pad tokens. Inference batches are simply sorted by length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, overload

import numpy as np
import torch

if TYPE_CHECKING:
    from tunelab.backends import OnnxModule


def tokenize(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per text (with special tokens), truncated to ``max_length``; no padding."""
    enc = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    return enc["input_ids"]


def length_grouped_batches(
    lengths: list[int], batch_size: int, seed: int, group: int = 50
) -> list[list[int]]:
    """One epoch of training batches (lists of example indices), deterministic for ``seed``."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    chunk = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: -lengths[i])
        batches += [part[j : j + batch_size] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(ids: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad to the longest sequence in the batch. Returns input_ids and attention_mask, (B, T)."""
    longest = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), longest), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
        mask[i, : len(x)] = 1
    return {"input_ids": input_ids, "attention_mask": mask}


def sorted_batches(lengths: list[int], batch_size: int) -> Iterator[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for j in range(0, len(order), batch_size):
        yield order[j : j + batch_size]


def output_logits(output) -> torch.Tensor:
    """The logits of a model output; span heads give (B, T, 2): start and end scores."""
    if getattr(output, "logits", None) is None and hasattr(output, "start_logits"):
        return torch.stack([output.start_logits, output.end_logits], dim=-1)
    return output.logits


@overload
def predict_logits(
    model: torch.nn.Module | OnnxModule,
    ids: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    per_token: Literal[False] = False,
) -> np.ndarray: ...
@overload
def predict_logits(
    model: torch.nn.Module | OnnxModule,
    ids: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    *,
    per_token: Literal[True],
) -> list[np.ndarray]: ...
@overload
def predict_logits(
    model: torch.nn.Module | OnnxModule,
    ids: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    per_token: bool = False,
) -> np.ndarray | list[np.ndarray]: ...
@torch.inference_mode()
def predict_logits(
    model: torch.nn.Module | OnnxModule,
    ids: list[list[int]],
    pad_id: int,
    batch_size: int = 64,
    per_token: bool = False,
) -> np.ndarray | list[np.ndarray]:
    """Logits for every example, in input order.

    Returns:
        (N, num_labels) float32; with ``per_token`` a list of (len(ids[i]), num_labels) arrays.
    """
    was_training = model.training
    if was_training:  # switching walks every module: a cost per call a server notices
        model.eval()
    from tunelab.backends import model_device

    device = model_device(model)
    out: list[np.ndarray | None] = [None] * len(ids)
    for batch in sorted_batches([len(x) for x in ids], batch_size):
        tensors = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id).items()}
        logits = output_logits(model(**tensors)).float().cpu().numpy()
        for i, row in zip(batch, logits, strict=True):
            out[i] = row[: len(ids[i])] if per_token else row  # drop padding positions
    if was_training:
        model.train()
    return out if per_token else np.stack(out)  # type: ignore[return-value,arg-type]
