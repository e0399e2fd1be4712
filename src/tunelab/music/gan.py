"""A conditional WGAN-GP on piano-roll bars (Gulrajani et al. 2017; the bar generator of
MuseGAN, Dong et al. 2018), for melodies.

A window is a roll of (steps, classes): per sixteenth-note step one of hold, note off, or a note
start of a pitch in the range, as one-hot rows (a monophonic piano roll that keeps note starts).
The generator maps noise and a condition (the mode: major or minor) through transposed
convolutions to a softmax per step; the critic reads a roll and the condition through strided
convolutions. The gradient penalty holds the critic's gradient norm near 1 on points between
real and generated rolls. A sample is the most likely class per step (MuseGAN binarises its
rolls the same way).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tunelab.music.data import Windows
from tunelab.music.runfolder import budget_spent, restore_training, training_state
from tunelab.music.vae import CLASSES

MODES = ("major", "minor")


@dataclass
class GANConfig:
    bars: int = 2
    bar_steps: int = 16
    noise: int = 64
    width: int = 256

    @property
    def steps(self) -> int:
        return self.bars * self.bar_steps

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class GANTraining:
    epochs: int = 40
    batch_size: int = 128
    learning_rate: float = 2e-4
    critic_steps: int = 5
    penalty: float = 10.0
    transpose: bool = True
    max_minutes: float | None = None
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


class Generator(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, self.start = cfg.width, cfg.steps // 8
        self.cond = nn.Embedding(len(MODES), 16)
        self.project = nn.Sequential(
            nn.Linear(cfg.noise + 16, w * self.start), nn.BatchNorm1d(w * self.start), nn.ReLU()
        )

        def up(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(
                nn.ConvTranspose1d(a, b, 4, stride=2, padding=1), nn.BatchNorm1d(b), nn.ReLU()
            )

        self.body = nn.Sequential(up(w, w // 2), up(w // 2, w // 4), up(w // 4, w // 4))
        self.out = nn.Conv1d(w // 4, CLASSES, 3, padding=1)

    def forward(self, noise: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        """A soft roll (batch, steps, classes): a softmax per step."""
        h = self.project(torch.cat([noise, self.cond(mode)], dim=-1))
        h = self.body(h.view(len(noise), -1, self.start))
        return F.softmax(self.out(h).transpose(1, 2), dim=-1)


class Critic(nn.Module):
    def __init__(self, cfg: GANConfig) -> None:
        super().__init__()
        w = cfg.width
        self.cond = nn.Embedding(len(MODES), 8)

        def down(a: int, b: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(a, b, 4, stride=2, padding=1), nn.LeakyReLU(0.2))

        self.body = nn.Sequential(
            nn.Conv1d(CLASSES + 8, w // 4, 3, padding=1),
            nn.LeakyReLU(0.2),
            down(w // 4, w // 2),
            down(w // 2, w),
            down(w, w),
        )
        self.out = nn.Linear(w * (cfg.steps // 8), 1)

    def forward(self, roll: torch.Tensor, mode: torch.Tensor) -> torch.Tensor:
        c = self.cond(mode).unsqueeze(1).expand(-1, roll.shape[1], -1)
        h = self.body(torch.cat([roll, c], dim=-1).transpose(1, 2))
        return self.out(h.flatten(1)).squeeze(1)


def gradient_penalty(
    critic: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    mode: torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP's penalty: the mean of (||grad critic(x)|| - 1)^2 at random points x on the
    lines between real and generated rolls."""
    eps = torch.rand(len(real), 1, 1, generator=generator)
    x = (eps * real + (1 - eps) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x, mode).sum(), x, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def one_hot(x: torch.Tensor) -> torch.Tensor:
    return F.one_hot(x, CLASSES).float()


def modes_of(x: torch.Tensor) -> torch.Tensor:
    """Each window's mode (0 major, 1 minor) by the scale its notes fit best."""
    from tunelab.music.metrics import best_scale
    from tunelab.music.vae import from_classes

    return torch.tensor([MODES.index(best_scale(from_classes(w.tolist()))[1]) for w in x])


@torch.no_grad()
def sample(
    g: Generator, n: int, mode: int | torch.Tensor = 0, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``n`` windows of classes: noise from the prior, the most likely class per step."""
    g.eval()
    noise = torch.randn(n, g.cfg.noise, generator=generator)
    modes = mode if isinstance(mode, torch.Tensor) else torch.full((n,), mode, dtype=torch.long)
    return g(noise, modes).argmax(-1)


def train_gan(
    gen: Generator,
    critic: Critic,
    train: list[list[int]],
    t: GANTraining,
    log: Callable[[dict], None],
    echo: Callable[[str], None],
    checkpoint: Callable[[dict], None] | None = None,
    resume: dict | None = None,
) -> dict:
    """WGAN-GP: ``critic_steps`` critic updates per generator update (Adam, betas 0.5/0.9)."""
    torch.manual_seed(t.seed)
    data = Windows(train)
    modes = modes_of(data.x)  # transposing keeps a window's mode
    og = torch.optim.Adam(gen.parameters(), lr=t.learning_rate, betas=(0.5, 0.9))
    oc = torch.optim.Adam(critic.parameters(), lr=t.learning_rate, betas=(0.5, 0.9))
    g = torch.Generator().manual_seed(t.seed)
    step, epoch0, seconds, last = 0, 0, 0.0, {}
    parts = {"generator_model": gen, "critic": critic, "generator_optimizer": og,
             "critic_optimizer": oc}  # fmt: skip
    if resume:
        step, epoch0, seconds = restore_training(resume, parts, g)
        echo(f"resuming after epoch {epoch0} (step {step})")
    for epoch in range(epoch0, t.epochs):
        start = time.perf_counter()
        gen.train()
        critic.train()
        w_sum = gp_sum = g_sum = 0.0
        n_batches = 0
        for idx, x in data.batches(t.batch_size, g, t.transpose):
            m = modes[idx]
            real = one_hot(x)
            fake = gen(torch.randn(len(x), gen.cfg.noise, generator=g), m).detach()
            gp = gradient_penalty(critic, real, fake, m, g)
            wdist = critic(real, m).mean() - critic(fake, m).mean()
            loss_c = -wdist + t.penalty * gp
            oc.zero_grad(set_to_none=True)
            loss_c.backward()
            oc.step()
            w_sum += wdist.item()
            gp_sum += gp.item()
            n_batches += 1
            if n_batches % t.critic_steps == 0:
                mg = m[torch.randperm(len(m), generator=g)]
                loss_g = -critic(gen(torch.randn(len(x), gen.cfg.noise, generator=g), mg), mg)
                og.zero_grad(set_to_none=True)
                loss_g.mean().backward()
                og.step()
                g_sum += loss_g.mean().item()
                step += 1
        seconds += time.perf_counter() - start
        last = {
            "epoch": epoch + 1,
            "step": step,
            "wasserstein": w_sum / max(1, n_batches),
            "gradient_penalty": gp_sum / max(1, n_batches),
            "generator_loss": g_sum / max(1, n_batches // t.critic_steps),
            "seconds": seconds,
        }
        log({"type": "eval", **last})
        echo(
            f"epoch {epoch + 1}/{t.epochs}: Wasserstein estimate {last['wasserstein']:.3f}, "
            f"gradient penalty {last['gradient_penalty']:.3f} | {seconds:.0f} s"
        )
        if checkpoint is not None:
            checkpoint(training_state(parts, g, step, epoch + 1, seconds))
        if budget_spent(t.max_minutes, seconds):
            echo(f"stopping after epoch {epoch + 1}: the {t.max_minutes:g}-minute budget is spent")
            break
    return {
        "epochs_run": last.get("epoch", epoch0),
        "generator_steps": step,
        "seconds": seconds,
        "train_windows": len(data),
        "modes": {name: int((modes == i).sum()) for i, name in enumerate(MODES)},
        "last": last,
        "batches_per_epoch": math.ceil(len(data) / t.batch_size),
    }
