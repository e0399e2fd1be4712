"""A trained music model loaded from its run folder, behind one interface for the VAE and the
GAN: sample windows (with a mode, attribute shifts, a temperature and a seed), and for the VAE
encode and interpolate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tunelab.errors import TunelabError
from tunelab.music import runfolder
from tunelab.music.vae import from_classes


@dataclass
class MusicModel:
    kind: str  # vae | gan
    net: Any  # a MelodyVAE or a GAN Generator
    record: dict
    folder: Path
    attributes: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def bars(self) -> int:
        return int(self.record["config"]["bars"])

    @property
    def bar_steps(self) -> int:
        return int(self.record["config"]["bar_steps"])

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        seed: int = 0,
        mode: str | None = None,
        shifts: dict[str, float] | None = None,
    ) -> list[list[int]]:
        """``n`` windows as event tokens, drawn from the prior: the VAE's codes plus the
        attribute shifts (``{"minor": 1.5}``: that many attribute vectors), decoded at
        ``temperature``; the GAN's noise with ``mode`` as its condition."""
        return self._keyed(self._sample(n, temperature, seed, mode, shifts), seed)

    def _sample(self, n, temperature, seed, mode, shifts) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        if self.kind == "gan":
            from tunelab.music.gan import MODES, sample

            m = MODES.index(mode) if mode in MODES else 0
            if mode is None:  # as in the training data: each mode by its share
                share = self.record.get("training", {}).get("modes", {})
                p = share.get("minor", 0) / max(1, sum(share.values()))
                modes = (torch.rand(n, generator=g) < p).long()
                return [from_classes(w) for w in sample(self.net, n, modes, g).tolist()]
            return [from_classes(w) for w in sample(self.net, n, m, g).tolist()]
        z = torch.randn(n, self.net.cfg.z, generator=g)
        for name, amount in (shifts or {}).items():
            if name not in self.attributes:
                raise TunelabError(
                    f"attribute {name!r}: this model has {', '.join(self.attributes) or 'none'}"
                )
            z = z + amount * self.attributes[name]
        self.net.eval()
        return [from_classes(w) for w in self.net.decode(z, temperature, g).tolist()]

    def _keyed(self, ws: list[list[int]], seed: int) -> list[list[int]]:
        """Samples placed in keys drawn from the training data's (when the run recorded them)."""
        keys = self.record.get("keys")
        if not keys:
            return ws
        from tunelab.music.keys import place_in_keys

        return place_in_keys(ws, keys, seed)

    def latent(self, windows: list[list[int]]) -> torch.Tensor:
        from tunelab.music.data import as_tensor

        self._need_vae("encoding")
        self.net.eval()
        with torch.no_grad():
            return self.net.encode(as_tensor(windows))[0]

    def decode(self, z: torch.Tensor, temperature: float = 0.0, seed: int = 0) -> list[list[int]]:
        self._need_vae("decoding a latent code")
        g = torch.Generator().manual_seed(seed)
        return [from_classes(w) for w in self.net.decode(z, temperature, g).tolist()]

    def interpolate(self, a: list[int], b: list[int], points: int = 7) -> list[list[int]]:
        """Greedy decodes of ``points`` codes on the spherical path from ``a`` to ``b``."""
        from tunelab.music.vae import slerp

        mu = self.latent([a, b])
        zs = torch.cat([slerp(mu[:1], mu[1:], i / (points - 1)) for i in range(points)])
        return self.decode(zs)

    def _need_vae(self, what: str) -> None:
        if self.kind != "vae":
            raise TunelabError(f"{self.folder}: {what} needs a VAE; this is a {self.kind}")


def build(kind: str, config: dict) -> Any:
    if kind == "vae":
        from tunelab.music.vae import MelodyVAE, VAEConfig

        return MelodyVAE(VAEConfig(**config))
    from tunelab.music.gan import GANConfig, Generator

    return Generator(GANConfig(**config))


def load_music_model(folder: str | Path) -> MusicModel:
    """The model in a run folder of ``tunelab music train`` (clear errors for anything else)."""
    import json

    record = runfolder.read_record(folder)
    try:
        net = build(record["kind"], record["config"])
    except (KeyError, TypeError) as e:
        raise TunelabError(f"{folder}/{runfolder.MUSIC_FILE}: bad field 'config' ({e})") from None
    runfolder.load_weights(folder, net)
    net.eval()
    attrs = {}
    f = Path(folder) / runfolder.ATTRIBUTES
    if f.is_file():
        attrs = {k: torch.tensor(v) for k, v in json.loads(f.read_text()).items()}
    return MusicModel(record["kind"], net, record, Path(folder), attrs)
