"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021). PEFT has no such method.

An adapter is a small residual MLP, ``h + up(act(down(h)))`` with ``down``: d -> ``adapter_size``
and ``up``: ``adapter_size`` -> d. ``up`` starts at zero, so before training the model computes
exactly what the pretrained one did. Placement (``adapter_placement``):

- ``houlsby``: after the attention output projection and after the feed-forward output
  projection of every layer (two adapters per layer), before the residual add and norm;
- ``pfeiffer``: after the feed-forward output projection only (one per layer, cheaper, usually
  as accurate).

Adapters are attached to the projection as a child module and applied by a forward hook, so the
base model's own weight names are unchanged. The adapters, the normalisation layers (as in the
Houlsby paper) and the task head train; the run folder holds only those tensors plus
``tunelab_adapters.json``. Adapters are non-linear, so they cannot be merged into the weights.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch

from tunelab.errors import ConfigError, TunelabError
from tunelab.methods import partial
from tunelab.methods.base import BuildFrom, Method, MethodContext, option, register_method

CONFIG_FILE = "tunelab_adapters.json"
PLACEMENTS = ("houlsby", "pfeiffer")
# output projections of the attention block and of the feed-forward block, per architecture
ATTENTION_OUT = re.compile(r"(attention\.output\.dense|self_attn\.o_proj|self_attn\.out_proj)$")
FFN_OUT = re.compile(r"(layer\.\d+\.output\.dense|mlp\.down_proj|mlp\.fc2)$")


class Bottleneck(torch.nn.Module):
    """h -> h + up(act(down(h))); (..., d) -> (..., d)."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.down = torch.nn.Linear(dim, size)
        self.act = torch.nn.GELU()
        self.up = torch.nn.Linear(size, dim)
        torch.nn.init.normal_(self.down.weight, std=0.02)
        torch.nn.init.zeros_(self.down.bias)
        torch.nn.init.zeros_(self.up.weight)  # identity at the start of training
        torch.nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.up(self.act(self.down(h)))


def _run_adapter(module: torch.nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    return cast(Bottleneck, module.tunelab_adapter)(output)  # added by insert()


def insert(model: torch.nn.Module, size: int, placement: str) -> list[str]:
    """Attach an adapter to every matching projection; returns their names."""
    if placement not in PLACEMENTS:
        raise ConfigError(
            f"key 'adapter_placement' = {placement!r} must be one of {', '.join(PLACEMENTS)}"
        )
    patterns = [FFN_OUT] + ([ATTENTION_OUT] if placement == "houlsby" else [])
    names = []
    for name, mod in list(model.named_modules()):
        if (
            isinstance(mod, torch.nn.Linear)
            and any(p.search(name) for p in patterns)
            and not (placement == "pfeiffer" and ATTENTION_OUT.search(name))
        ):
            mod.add_module(
                "tunelab_adapter",
                Bottleneck(mod.out_features, size).to(
                    dtype=mod.weight.dtype, device=mod.weight.device
                ),
            )
            mod.register_forward_hook(_run_adapter)
            names.append(name)
    if not names:
        raise ConfigError(
            f"method 'adapter' does not know where to put adapters in "
            f"{type(model).__name__} (supported: BERT-like, Llama/Gemma-like)"
        )
    return names


@dataclass
class AdapterOptions:
    adapter_size: int = option(64, "adapter: bottleneck width", lambda v: v >= 1, "must be >= 1")
    adapter_placement: str = option(
        "houlsby",
        "adapter: houlsby (after attention and feed-forward) or pfeiffer (after feed-forward only)",
        lambda v: v in PLACEMENTS,
        "must be houlsby or pfeiffer",
    )


def apply(model: torch.nn.Module, options: AdapterOptions, ctx: MethodContext) -> torch.nn.Module:
    head = list(ctx.head)
    size, placement = options.adapter_size, options.adapter_placement
    insert(model, size, placement)
    # torch's stub types Module.__setattr__ values as Tensor | Module; plain attributes take any
    model.tunelab_adapter_config = {"adapter_size": size, "adapter_placement": placement}  # type: ignore[assignment]
    _, layers = partial.layer_stack(model)
    stack = {id(p) for p in layers.parameters()}
    return partial.train_only(
        model,
        lambda n: (
            ".tunelab_adapter." in n or partial.in_head(n, head) or _is_layer_norm(model, n, stack)
        ),
    )


def _is_layer_norm(model: torch.nn.Module, name: str, stack: set[int]) -> bool:
    if "norm" not in name.lower():
        return False
    return id(model.get_parameter(name)) in stack


def save(model: torch.nn.Module, out: Path) -> None:
    partial.save_trainable(model, out)
    (out / CONFIG_FILE).write_text(
        json.dumps(model.tunelab_adapter_config) + "\n", encoding="utf-8"
    )


def load(
    run_dir: Path, build_from: BuildFrom, base_path: str, ctx: MethodContext
) -> torch.nn.Module:
    f = Path(run_dir) / CONFIG_FILE
    if not f.is_file():
        raise TunelabError(f"{run_dir}: incomplete run folder, {CONFIG_FILE} is missing")
    cfg = json.loads(f.read_text(encoding="utf-8"))
    model = build_from(base_path)
    insert(model, int(cfg["adapter_size"]), cfg["adapter_placement"])
    model.tunelab_adapter_config = cfg
    return partial.load_trainable(model, run_dir, ctx.files)


register_method(
    Method(
        "adapter",
        "bottleneck adapters after attention and feed-forward "
        "(Houlsby) or feed-forward only (Pfeiffer); small run folder",
        1e-3,
        apply,
        save,
        load,
        options=AdapterOptions,
    )
)
