"""Training the melody VAE: Adam with an exponentially decaying learning rate, KL annealing and
free bits, a new random key per window per batch, validation every epoch, a checkpoint after
every epoch (``--resume``), a time budget; then the attribute vectors from latent means."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from tunelab.music.data import Windows, as_tensor
from tunelab.music.runfolder import budget_spent, restore_training, training_state
from tunelab.music.vae import MelodyVAE, VAEConfig, beta_at, vae_loss


@dataclass
class VAETraining:
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 3e-3
    min_learning_rate: float = 1e-5
    max_beta: float = 0.2
    beta_rate: float = 0.999  # beta = max_beta * (1 - rate**step)
    free_bits: float = 128.0
    clip_norm: float = 5.0
    transpose: bool = True
    max_minutes: float | None = None
    seed: int = 0
    eval_windows: int = 512

    def to_json(self) -> dict:
        return asdict(self)


@torch.no_grad()
def reconstruction(model: MelodyVAE, x: torch.Tensor, batch: int = 512) -> dict:
    """Greedy decoding from the posterior mean, without teacher forcing: per-step accuracy,
    whole-window accuracy, note-start accuracy (steps where either has a note start), and the
    mean KL of the posteriors (nats per window)."""
    model.eval()
    hits = whole = onset_hits = onsets = 0
    kls = []
    from tunelab.music.vae import kl_divergence

    for a in range(0, len(x), batch):
        xb = x[a : a + batch]
        mu, logvar = model.encode(xb)
        kls.append(kl_divergence(mu, logvar))
        y = model.decode(mu)
        hits += int((y == xb).sum())
        whole += int((y == xb).all(1).sum())
        on = (xb >= 2) | (y >= 2)
        onsets += int(on.sum())
        onset_hits += int(((y == xb) & on).sum())
    n = max(1, len(x))
    return {
        "reconstruction_accuracy": hits / max(1, x.numel()),
        "window_accuracy": whole / n,
        "note_accuracy": onset_hits / max(1, onsets),
        "kl_nats": float(torch.cat(kls).mean()) if kls else 0.0,
    }


@torch.no_grad()
def validation_loss(model: MelodyVAE, x: torch.Tensor, t: VAETraining, beta: float) -> dict:
    model.eval()
    g = torch.Generator().manual_seed(1234)
    recon = kl = 0.0
    for a in range(0, len(x), 512):
        xb = x[a : a + 512]
        mu, logvar = model.encode(xb)
        z = mu + torch.randn(mu.shape, generator=g) * torch.exp(0.5 * logvar)
        logits = model.decode_teacher_forced(z, xb)
        r = torch.nn.functional.cross_entropy(logits.transpose(1, 2), xb, reduction="none")
        recon += float(r.sum())
        from tunelab.music.vae import kl_divergence

        kl += float(kl_divergence(mu, logvar).sum())
    n = max(1, len(x))
    return {"val_recon": recon / n, "val_kl": kl / n, "val_elbo": (recon + kl) / n}


def train_vae(
    model: MelodyVAE,
    train: list[list[int]],
    validation: list[list[int]],
    t: VAETraining,
    log: Callable[[dict], None],
    echo: Callable[[str], None],
    checkpoint: Callable[[dict], None] | None = None,
    resume: dict | None = None,
) -> dict:
    """Train ``model`` in place; returns the training record (epochs, steps, seconds, the last
    validation figures)."""
    torch.manual_seed(t.seed)
    data = Windows(train)
    val = as_tensor(validation[: t.eval_windows]) if validation else as_tensor(train[:256])
    opt = torch.optim.Adam(model.parameters(), lr=t.learning_rate)
    steps_per_epoch = math.ceil(len(data) / t.batch_size)
    total = steps_per_epoch * t.epochs
    decay = (t.min_learning_rate / t.learning_rate) ** (1 / max(1, total))
    g = torch.Generator().manual_seed(t.seed)
    step, epoch0, seconds, last = 0, 0, 0.0, {}
    parts = {"model": model, "optimizer": opt}
    if resume:
        step, epoch0, seconds = restore_training(resume, parts, g)
        echo(f"resuming after epoch {epoch0} (step {step})")
    for epoch in range(epoch0, t.epochs):
        start = time.perf_counter()
        model.train()
        run_loss = run_recon = run_kl = 0.0
        for _, x in data.batches(t.batch_size, g, t.transpose):
            for group in opt.param_groups:
                group["lr"] = t.learning_rate * decay**step
            beta = beta_at(step, t.max_beta, t.beta_rate)
            recon, kl, _ = model(x)
            loss = vae_loss(recon, kl, beta, t.free_bits)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
            opt.step()
            step += 1
            run_loss += loss.item()
            run_recon += recon.mean().item()
            run_kl += kl.mean().item()
        seconds += time.perf_counter() - start
        n = steps_per_epoch
        beta = beta_at(step, t.max_beta, t.beta_rate)
        last = {
            "epoch": epoch + 1,
            "step": step,
            "loss": run_loss / n,
            "recon": run_recon / n,
            "kl": run_kl / n,
            "beta": beta,
            "learning_rate": t.learning_rate * decay**step,
            "seconds": seconds,
            **validation_loss(model, val, t, beta),
            **{f"val_{k}": v for k, v in reconstruction(model, val[:256]).items()},
        }
        log({"type": "eval", **last})
        echo(
            f"epoch {epoch + 1}/{t.epochs}: loss {last['loss']:.2f} (recon {last['recon']:.2f}, "
            f"KL {last['kl']:.1f} nats, beta {beta:.3f}) | validation reconstruction "
            f"{last['val_reconstruction_accuracy']:.3f} | {seconds:.0f} s"
        )
        if checkpoint is not None:
            checkpoint(training_state(parts, g, step, epoch + 1, seconds))
        if budget_spent(t.max_minutes, seconds):
            echo(f"stopping after epoch {epoch + 1}: the {t.max_minutes:g}-minute budget is spent")
            break
    return {"epochs_run": last.get("epoch", epoch0), "steps": step, "seconds": seconds,
            "train_windows": len(data), "last": last}  # fmt: skip


@torch.no_grad()
def attribute_vectors(
    model: MelodyVAE, ws: list[list[int]], minor: list[bool] | None = None, limit: int = 4000
) -> dict:
    """MusicVAE's attribute vectors: the mean latent code of the windows with an attribute minus
    that of those without. ``minor`` (the window's piece is in minor: ``minor`` per window, else
    the scale that fits the window best, which two bars often leave ambiguous), ``density`` (more
    note starts than the median), ``register`` (mean pitch above the median)."""
    import random

    if minor is not None and len(minor) != len(ws):
        raise ValueError(f"{len(minor)} minor flags for {len(ws)} windows")
    if len(ws) > limit:  # a sample of the whole set, not its first pieces
        keep = sorted(random.Random(0).sample(range(len(ws)), limit))
        ws = [ws[i] for i in keep]
        minor = [minor[i] for i in keep] if minor is not None else None
    from tunelab.music.encoding import FIRST_PITCH
    from tunelab.music.metrics import best_scale

    model.eval()
    mu = torch.cat([model.encode(as_tensor(ws[a : a + 512]))[0] for a in range(0, len(ws), 512)])
    density = torch.tensor([sum(t >= FIRST_PITCH for t in w) for w in ws], dtype=torch.float)
    pitch = torch.tensor(
        [
            sum(t - FIRST_PITCH for t in w if t >= FIRST_PITCH)
            / max(1, sum(t >= FIRST_PITCH for t in w))
            for w in ws
        ]
    )
    is_minor = torch.tensor(
        minor if minor is not None else [best_scale(w)[1] == "minor" for w in ws]
    )
    masks = {
        "minor": is_minor,
        "density": density > density.median(),
        "register": pitch > pitch.median(),
    }
    out = {}
    for name, m in masks.items():
        if m.any() and (~m).any():
            out[name] = (mu[m].mean(0) - mu[~m].mean(0)).tolist()
    return out


__all__ = ["VAEConfig", "VAETraining", "attribute_vectors", "reconstruction", "train_vae"]
