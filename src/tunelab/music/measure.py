"""Every measure of a music model on held-out windows, side by side with the held-out data itself
and the random and Markov-chain baselines trained on the same training windows.

Samples are drawn from the prior at temperature 1 and are not filtered; each is placed in a key
drawn from the training windows' keys (:mod:`tunelab.music.keys`). For the VAE also:
reconstruction (greedy decoding from the posterior mean, no teacher forcing) with the KL it
took, and the smoothness of latent interpolations between held-out windows.
"""

from __future__ import annotations

import random

import torch

from tunelab.music import baselines, metrics
from tunelab.music.judge import interpolation_smoothness, two_sample_accuracy


def model_samples(kind: str, net, n: int, seed: int, train: list[list[int]]) -> list[list[int]]:
    from tunelab.music.vae import from_classes

    g = torch.Generator().manual_seed(seed)
    net.eval()
    if kind == "gan":
        from tunelab.music.gan import MODES, sample
        from tunelab.music.metrics import best_scale

        share = sum(best_scale(w)[1] == MODES[1] for w in train[:2000]) / max(1, len(train[:2000]))
        modes = (torch.rand(n, generator=g) < share).long()
        out = sample(net, n, modes, g)
    else:
        out = torch.cat(
            [
                net.decode(torch.randn(min(500, n - a), net.cfg.z, generator=g), 1.0, g)
                for a in range(0, n, 500)
            ]
        )
    from tunelab.music.keys import key_histogram, place_in_keys

    return place_in_keys([from_classes(w) for w in out.tolist()], key_histogram(train), seed)


def _row(ws: list[list[int]], held: list[list[int]], seed: int, bar_steps: int) -> dict:
    row = metrics.summary(ws, held, bar_steps)
    row["two_sample_accuracy"] = two_sample_accuracy(ws, held, seed)
    return row


def structure_gap(row: dict, held: dict) -> float:
    """How far a model's bar-level structure is from the held-out data's: the absolute
    differences of repetition and groove consistency, summed."""
    return abs(row["repetition"] - held["repetition"]) + abs(
        row["groove_consistency"] - held["groove_consistency"]
    )


def measure_run(
    kind: str,
    net,
    ws: dict[str, list[list[int]]],
    seed: int = 0,
    n: int = 1000,
    split: str = "test",
    baselines_too: bool = True,
    bar_steps: int = 16,
) -> dict:
    held = ws[split] or ws["validation"] or ws["train"]
    train = ws["train"]
    length = len(held[0])
    samples = model_samples(kind, net, n, seed, train)
    out: dict = {"split": split, "held_out_windows": len(held), "samples": n}
    rows = {kind: _row(samples, held, seed, bar_steps)}
    if baselines_too:
        chain = baselines.Markov(train)
        rows["markov"] = _row(chain.sample(n, length, seed), held, seed, bar_steps)
        rows["random"] = _row(
            baselines.random_melodies(train, n, length, seed), held, seed, bar_steps
        )
        rows["held_out"] = metrics.summary(held, held, bar_steps)
        for name in (kind, "markov", "random"):
            rows[name]["structure_gap"] = structure_gap(rows[name], rows["held_out"])
    out["rows"] = rows
    if kind == "vae":
        from tunelab.music.data import as_tensor
        from tunelab.music.vae_train import reconstruction

        out["reconstruction"] = reconstruction(net, as_tensor(held))
        rng = random.Random(seed)
        pairs = [tuple(rng.sample(held, 2)) for _ in range(50)]
        out["interpolation"] = interpolation_smoothness(net, pairs)  # type: ignore[arg-type]
    return out
