"""A MusicVAE-style melody model (Roberts et al. 2018), small enough for a CPU: a bidirectional
GRU encoder to a Gaussian posterior, a hierarchical decoder (a conductor GRU gives each bar an
embedding; a bar decoder GRU writes the bar's sixteenth-note steps from it and from the previous
token), trained with KL annealing and free bits.

Steps are classes of a compact vocabulary: 0 hold, 1 note off, 2 + (pitch - LOW) a note start
in the window range LOW..HIGH (:mod:`tunelab.music.encoding`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.music.encoding import FIRST_PITCH, HIGH, LOW

CLASSES = 2 + HIGH - LOW + 1  # hold, note off, the pitches of the range
START = CLASSES  # the decoder's input before the first step (an embedding row, never an output)


def to_classes(window: list[int]) -> list[int]:
    """Event tokens (:mod:`tunelab.music.encoding`) to the model's compact classes."""
    return [t if t < FIRST_PITCH else t - FIRST_PITCH - LOW + 2 for t in window]


def from_classes(classes: list[int]) -> list[int]:
    return [c if c < 2 else c - 2 + LOW + FIRST_PITCH for c in classes]


@dataclass
class VAEConfig:
    bars: int = 2
    bar_steps: int = 16
    z: int = 128
    embed: int = 48
    encoder: int = 256
    conductor: int = 256
    decoder: int = 384
    dropout: float = 0.0
    word_dropout: float = 0.3  # training: the share of previous tokens the decoder is not shown

    @property
    def steps(self) -> int:
        return self.bars * self.bar_steps

    def to_json(self) -> dict:
        return asdict(self)


class MelodyVAE(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(CLASSES + 1, cfg.embed)
        self.encoder = nn.GRU(cfg.embed, cfg.encoder, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(2 * cfg.encoder, cfg.z)
        self.to_logvar = nn.Linear(2 * cfg.encoder, cfg.z)
        self.z_to_conductor = nn.Linear(cfg.z, cfg.conductor)
        self.conductor = nn.GRU(cfg.z, cfg.conductor, batch_first=True)
        self.bar_to_decoder = nn.Linear(cfg.conductor, cfg.decoder)
        self.decoder = nn.GRU(cfg.embed + cfg.conductor, cfg.decoder, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.decoder, CLASSES)

    # --- encoder -----------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance of windows ``x`` (batch, steps) of classes."""
        _, h = self.encoder(self.embed(x))
        h = torch.cat([h[0], h[1]], dim=-1)
        return self.to_mu(h), self.to_logvar(h).clamp(-12, 6)

    # --- decoder -----------------------------------------------------------------------------
    def bar_embeddings(self, z: torch.Tensor) -> torch.Tensor:
        """The conductor's embedding of each bar: (batch, bars, conductor)."""
        h0 = torch.tanh(self.z_to_conductor(z)).unsqueeze(0)
        inp = z.unsqueeze(1).expand(-1, self.cfg.bars, -1)
        c, _ = self.conductor(inp, h0)
        return c

    def decode_teacher_forced(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Logits of every step given the true previous steps: (batch, steps, classes)."""
        b, bars, s = x.shape[0], self.cfg.bars, self.cfg.bar_steps
        c = self.bar_embeddings(z)  # (b, bars, C)
        prev = torch.cat([torch.full_like(x[:, :1], START), x[:, :-1]], dim=1)
        if self.training and self.cfg.word_dropout > 0:  # lean on z, not on the previous step
            hide = torch.rand(prev.shape, device=prev.device) < self.cfg.word_dropout
            prev = prev.masked_fill(hide, START)
        inp = self.embed(prev).view(b, bars, s, -1)
        inp = torch.cat([inp, c.unsqueeze(2).expand(-1, -1, s, -1)], dim=-1)
        h0 = torch.tanh(self.bar_to_decoder(c)).reshape(1, b * bars, -1)
        y, _ = self.decoder(inp.reshape(b * bars, s, -1), h0)
        return self.out(self.drop(y)).view(b, bars * s, -1)

    @torch.no_grad()
    def decode(
        self,
        z: torch.Tensor,
        temperature: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Windows from latent codes, step by step: greedy at temperature 0, else sampled."""
        b = z.shape[0]
        c = self.bar_embeddings(z)
        prev = torch.full((b,), START, dtype=torch.long, device=z.device)
        out = []
        for bar in range(self.cfg.bars):
            h = torch.tanh(self.bar_to_decoder(c[:, bar])).unsqueeze(0)
            for _ in range(self.cfg.bar_steps):
                inp = torch.cat([self.embed(prev), c[:, bar]], dim=-1).unsqueeze(1)
                y, h = self.decoder(inp, h)
                logits = self.out(y[:, 0])
                if temperature <= 0:
                    prev = logits.argmax(-1)
                else:
                    p = F.softmax(logits / temperature, dim=-1)
                    prev = torch.multinomial(p, 1, generator=generator).squeeze(1)
                out.append(prev)
        return torch.stack(out, dim=1)

    # --- training ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction loss and KL per window (batch,), and the logits."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        logits = self.decode_teacher_forced(z, x)
        recon = F.cross_entropy(logits.transpose(1, 2), x, reduction="none").sum(1)
        return recon, kl_divergence(mu, logvar), logits


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per row, in nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def vae_loss(recon: torch.Tensor, kl: torch.Tensor, beta: float, free_bits: float) -> torch.Tensor:
    """MusicVAE's objective: reconstruction + beta * max(KL - free nats, 0), batch mean. The
    free bits let the KL term cost nothing below ``free_bits`` bits, so the posterior keeps that
    much information instead of collapsing to the prior."""
    free_nats = free_bits * math.log(2.0)
    return (recon + beta * torch.clamp(kl - free_nats, min=0.0)).mean()


def beta_at(step: int, max_beta: float, rate: float) -> float:
    """KL annealing: beta rises from 0 towards ``max_beta`` as 1 - rate**step."""
    return max_beta * (1.0 - rate**step)


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latent codes (MusicVAE interpolates this way: points on
    the path keep the norm a Gaussian sample has)."""
    an, bn = a / a.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True)
    omega = torch.acos((an * bn).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
