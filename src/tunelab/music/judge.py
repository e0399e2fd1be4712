"""How good generated melodies are, beyond histograms: a classifier two-sample test (a small
convolutional classifier learns to tell generated from held-out windows; accuracy near 50% means
it cannot) and the smoothness of a latent interpolation."""

from __future__ import annotations

import random

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.music.data import as_tensor
from tunelab.music.vae import CLASSES


class _Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(CLASSES, 16)
        self.conv = nn.Sequential(
            nn.Conv1d(16, 64, 5, padding=2), nn.ReLU(), nn.Conv1d(64, 64, 5, padding=2), nn.ReLU()
        )
        self.out = nn.Linear(128, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.embed(x).transpose(1, 2))
        return self.out(torch.cat([h.mean(-1), h.amax(-1)], dim=-1)).squeeze(1)


def two_sample_accuracy(
    generated: list[list[int]], held_out: list[list[int]], seed: int = 0, epochs: int = 30
) -> float:
    """Test accuracy of a classifier trained to tell ``generated`` from ``held_out`` windows
    (equal numbers of each; 60% to train, 40% to test). 0.5: indistinguishable; 1.0: always
    told apart. Windows are compared in their own keys (nothing is transposed)."""
    n = min(len(generated), len(held_out))
    if n < 20:
        raise ValueError("the two-sample test needs at least 20 windows of each kind")
    rng = random.Random(seed)
    gen, ref = rng.sample(generated, n), rng.sample(held_out, n)
    x = torch.cat([as_tensor(gen), as_tensor(ref)])
    y = torch.cat([torch.ones(n), torch.zeros(n)])
    order = torch.randperm(2 * n, generator=torch.Generator().manual_seed(seed))
    x, y = x[order], y[order]
    cut = int(0.6 * 2 * n)
    torch.manual_seed(seed)
    model = _Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(cut, generator=g)
        for a in range(0, cut, 64):
            i = perm[a : a + 64]
            loss = F.binary_cross_entropy_with_logits(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(x[cut:]) > 0
    return float((pred == y[cut:].bool()).float().mean())


@torch.no_grad()
def interpolation_smoothness(model, pairs: list[tuple[list[int], list[int]]], points: int = 11):
    """Decode ``points`` codes on the spherical path between two windows' posterior means and
    measure how the melody changes along it, as Hamming distances over steps:

    - ``max_jump``: the largest change between neighbouring points, as a share of the change
      from end to end (1.0: it flips at once, as cutting from one melody to the other would;
      1/(points - 1): even steps);
    - ``path_ratio``: the sum of the changes over the end-to-end change (1.0: no detours);
    - ``in_key``: the in-key ratio of the points between the ends (they stay tonal).
    """
    from tunelab.music.metrics import in_key_ratio
    from tunelab.music.vae import from_classes, slerp

    model.eval()
    jumps, ratios, keys = [], [], []
    for a, b in pairs:
        mu, _ = model.encode(as_tensor([a, b]))
        zs = torch.cat([slerp(mu[:1], mu[1:], t / (points - 1)) for t in range(points)])
        dec = model.decode(zs)
        steps = [int((dec[i] != dec[i + 1]).sum()) for i in range(points - 1)]
        total = int((dec[0] != dec[-1]).sum())
        if total == 0:
            continue
        jumps.append(max(steps) / total)
        ratios.append(sum(steps) / total)
        keys += [in_key_ratio(from_classes(d.tolist())) for d in dec[1:-1]]
    mean = lambda v: float(sum(v) / len(v)) if v else 0.0  # noqa: E731
    return {"pairs": len(jumps), "max_jump": mean(jumps), "path_ratio": mean(ratios),
            "in_key": mean(keys)}  # fmt: skip
