"""Sentence embeddings: the last hidden state mean-pooled over the attention mask, then
L2-normalised (what the sentence-transformers MiniLM package declares in its modules.json), so a
dot product is the cosine similarity. Any encoder or decoder folder works: ``minilm-l6``, a
retriever fine-tuned by tunelab (``--task sentence-embedding``), ``gemma3-270m`` for Chinese.
Runs in bf16 where the CPU computes it natively (AMX, AVX-512 BF16), else fp32.

A fine-tuned retriever run is loaded with its adapter folded into the weights (LoRA adds no
matmuls per query) and can be **mixed with its base model in weight space**: ``mix`` 1.0 is the
fine-tuned model, 0.5 the average of the two weights (WiSE-FT, Wortsman et al., CVPR 2022:
interpolating a fine-tuned model with the model it started from keeps what pre-training knew
about questions unlike the training pairs). A knowledge base measures the mix on its
calibration questions (``calibrate.encoder_mix``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tunelab.errors import TunelabError

MAX_LENGTH = 128


class Encoder:
    def __init__(
        self,
        model: str,
        precision: str = "auto",
        max_length: int = MAX_LENGTH,
        mix: float = 1.0,
        keep_mixing: bool = False,
    ) -> None:
        """``mix``: the fine-tuned run's share in weight space (a retriever run only);
        ``keep_mixing``: keep both weight sets so :meth:`set_mix` can move it (building)."""
        from transformers import AutoModel, AutoTokenizer

        from tunelab.inference import _set_threads, inference_precision
        from tunelab.models.hf import quiet_transformers
        from tunelab.models.registry import resolve_model

        quiet_transformers()
        _set_threads()
        self.name = model
        self.precision = inference_precision(precision, torch.device("cpu"))
        self.dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.mix = 1.0
        self._tuned: dict[str, torch.Tensor] | None = None
        self._base: dict[str, torch.Tensor] | None = None
        if (Path(model).expanduser() / "tunelab.json").is_file():  # a tunelab run (any method)
            self._load_run(Path(model).expanduser())
        else:
            self.path = resolve_model(model).path
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            self.model = AutoModel.from_pretrained(self.path, dtype=self.dtype)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.eval()
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)  # PEFT passes config through
        if mix != 1.0:
            self.set_mix(mix)
        if not keep_mixing:
            self.stop_mixing()

    def _load_run(self, folder: Path) -> None:
        """A training run with its method folded in (and its base's weights kept for mixing);
        an export or a method that cannot be folded (prompts) as it loads."""
        import tunelab
        from tunelab.inference import base_model_path, load_run
        from tunelab.methods import get_method
        from tunelab.runs import read_run

        info = read_run(folder)
        method = get_method(info.method) if info.kind == "run" and not info.export else None
        if method is None or method.merge is None:
            tuned = tunelab.load(folder, precision=self.precision)
            self.path, self.tokenizer, self.model = str(tuned.run_dir), tuned.tokenizer, tuned.model
            return
        loaded = load_run(folder, info, precision="fp32", share_base=False)
        assert isinstance(loaded.model, torch.nn.Module)  # a training run: PyTorch weights
        model = method.merge(loaded.model)
        self.path, self.tokenizer = str(folder), loaded.tokenizer
        self._tuned = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._base_path = base_model_path(info)
        self.model = model.to(self.dtype)

    def trained_on(self) -> set[str] | None:
        """The texts of the run's training pairs (from the file its config.yaml names), or
        None when it is not a run or the file is gone."""
        import csv

        import yaml

        cfg = Path(self.path) / "config.yaml"
        if not cfg.is_file():
            return None
        train = (yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}).get("train")
        if not train or not Path(train).is_file() or not str(train).endswith(".csv"):
            return None
        with open(train, encoding="utf-8", newline="") as f:
            return {t.strip().lower() for row in csv.reader(f) for t in row}

    def stop_mixing(self) -> None:
        """Let go of the two weight sets kept for :meth:`set_mix` (the model keeps its mix)."""
        self._tuned = self._base = None

    @property
    def mixable(self) -> bool:
        return self._tuned is not None

    def set_mix(self, mix: float) -> None:
        """Weights = base + mix * (fine-tuned - base), for every weight the two share."""
        if not 0.0 <= mix <= 1.0:
            raise TunelabError(f"encoder mix must be between 0 and 1, not {mix}")
        if mix == self.mix:
            return
        if self._tuned is None:
            raise TunelabError(
                f"{self.name}: only a fine-tuned retriever run (full or a foldable adapter) can "
                "be mixed with its base model"
            )
        if self._base is None:
            from transformers import AutoModel

            base = AutoModel.from_pretrained(self._base_path, dtype=torch.float32).state_dict()
            self._base = {
                k: base[k] for k, v in self._tuned.items() if k in base and base[k].shape == v.shape
            }
        state = {
            k: (self._base[k] + mix * (v - self._base[k]) if k in self._base else v).to(self.dtype)
            if v.is_floating_point()
            else v
            for k, v in self._tuned.items()
        }
        self.model.load_state_dict(state)
        self.mix = mix

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length. Texts are sorted by length so
        a batch pads little; the rows come back in the order given."""
        return self.encode_tokens(texts, batch_size, tokens=False)[0]

    def encode_tokens(
        self,
        texts: list[str],
        batch_size: int = 64,
        tokens: bool = True,
        max_length: int | None = None,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """:meth:`encode`'s vectors and, from the same forward pass, each text's token vectors
        (float16, unit length, special tokens left out) for late interaction
        (:mod:`tunelab.assistant.coverage`)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        toks: list[np.ndarray] = [np.zeros((0, self.dim), np.float16)] * len(texts)
        special = torch.tensor(sorted(set(self.tokenizer.all_special_ids)), dtype=torch.long)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=max_length or self.max_length,
                    return_tensors="pt",
                )
                hidden = self.model(**enc).last_hidden_state
                out[idx] = pool(hidden, enc["attention_mask"])
                if not tokens:
                    continue
                unit = torch.nn.functional.normalize(hidden.float(), dim=-1)
                keep = enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], special)
                for row, i in enumerate(idx):
                    toks[i] = unit[row][keep[row]].to(torch.float16).numpy()
        return out, toks


def pool(hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    from tunelab.tasks.sentence_embedding import mean_pool

    return mean_pool(hidden, mask).numpy()


def model_label(model: str) -> str:
    """How a KB names its encoder: the alias, or the folder's absolute path."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.is_dir() else model
