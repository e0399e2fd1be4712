"""Training against overfitting: adversarial embeddings (FGM, PGD) and R-Drop.

FGM (Miyato et al., 2017) and PGD (Madry et al., 2018) perturb the output of the word-embedding
layer in the direction that raises the loss, and train on the perturbed batch as well as the
clean one. The perturbation lives on the embedding *output* (a forward hook), so it works with
every task and every method, frozen embeddings (LoRA, adapters) included, and each example's
perturbation has L2 norm ``epsilon`` over its real (non-padding) tokens.

R-Drop (Liang et al., 2021) runs each batch twice with different dropout masks and adds the
symmetric KL divergence between the two predictions to the mean of their losses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from transformers import PreTrainedModel


def _per_example_unit(g: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``g`` scaled to L2 norm 1 per example over its real tokens (padding zeroed)."""
    g = g * mask.unsqueeze(-1).to(g.dtype)
    norm = g.flatten(1).norm(dim=1).clamp_min(1e-12)
    return g / norm.view(-1, *([1] * (g.dim() - 1)))


class EmbeddingAttack:
    """FGM or PGD on the word embeddings of ``model`` (see the module docstring).

    Per micro-batch: ``with attack.capture():`` around the clean forward and backward records
    the embedding output's gradient; ``attack.loss(forward_loss, mask)`` then returns the loss
    on the adversarial embeddings (backpropagate it like the clean one). ``last_norms`` holds
    the per-example L2 norms of the last perturbation used.
    """

    def __init__(
        self, model: torch.nn.Module, kind: str, epsilon: float, steps: int = 3, alpha: float = 0.3
    ) -> None:
        if kind not in ("fgm", "pgd"):
            raise ValueError(f"unknown adversarial method {kind!r}")
        self.kind, self.epsilon, self.steps, self.alpha = kind, epsilon, steps, alpha
        # a Transformers model (a PEFT model forwards the call to its base model)
        self.module = cast("PreTrainedModel", model).get_input_embeddings()
        self.handle = self.module.register_forward_hook(self._hook)
        self.recording = False
        self.embedded: torch.Tensor | None = None
        self.delta: torch.Tensor | None = None
        self.last_norms: torch.Tensor | None = None

    def _hook(self, module, args, out):
        if self.recording:
            if out.requires_grad:
                out.retain_grad()
            else:  # frozen embeddings (LoRA, adapters): make the output a leaf with a grad
                out = out.detach().requires_grad_(True)
            self.embedded = out
        if self.delta is not None:
            out = out + self.delta
        return out

    @contextlib.contextmanager
    def capture(self):
        """Record the embedding output (and its gradient) of the passes inside."""
        self.recording, self.embedded = True, None
        try:
            yield
        finally:
            self.recording = False

    def _project(self, delta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        delta = delta * mask.unsqueeze(-1).to(delta.dtype)
        norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
        scale = (self.epsilon / norm).clamp(max=1.0)  # into the epsilon ball
        return delta * scale.view(-1, *([1] * (delta.dim() - 1)))

    def loss(self, forward_loss: Callable[[], torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """The loss on adversarially perturbed embeddings (after a captured clean pass)."""
        if self.embedded is None or self.embedded.grad is None:
            raise RuntimeError("EmbeddingAttack.loss needs a captured clean backward first")
        grad = self.embedded.grad.detach()
        mask = mask.to(grad.device)
        try:
            if self.kind == "fgm":
                self.delta = self.epsilon * _per_example_unit(grad, mask)
                self.last_norms = self.delta.flatten(1).norm(dim=1).detach()
                return forward_loss()
            delta = self._project(self.alpha * _per_example_unit(grad, mask), mask)
            for _ in range(self.steps - 1):  # ascend: gradients for delta only
                self.delta = delta.requires_grad_(True)
                (g,) = torch.autograd.grad(forward_loss(), delta)
                delta = self._project(
                    delta.detach() + self.alpha * _per_example_unit(g, mask), mask
                )
            self.delta = delta.detach()
            self.last_norms = self.delta.flatten(1).norm(dim=1)
            return forward_loss()
        finally:
            self.delta = None

    def close(self) -> None:
        self.handle.remove()


def rdrop_divergence(
    a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric KL between the softmax predictions of two passes, averaged over examples
    (or over the ``keep`` positions of per-token logits)."""
    la, lb = F.log_softmax(a.float(), -1), F.log_softmax(b.float(), -1)
    kl = 0.5 * ((la.exp() * (la - lb)).sum(-1) + (lb.exp() * (lb - la)).sum(-1))
    if keep is not None:
        kl = kl[keep]
    return kl.mean() if kl.numel() else kl.sum()
