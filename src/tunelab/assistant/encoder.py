"""Sentence embeddings: the last hidden state mean-pooled over the attention mask, then
L2-normalised (what the sentence-transformers MiniLM package declares in its modules.json), so a
dot product is the cosine similarity. Any encoder or decoder folder works: ``minilm-l6``, a
retriever fine-tuned by tunelab (``--task sentence-embedding``), ``gemma3-270m`` for Chinese.
Runs in bf16 where the CPU computes it natively (AMX, AVX-512 BF16), else fp32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

MAX_LENGTH = 128


class Encoder:
    def __init__(self, model: str, precision: str = "auto", max_length: int = MAX_LENGTH) -> None:
        from transformers import AutoModel, AutoTokenizer

        from tunelab.inference import _set_threads, inference_precision
        from tunelab.models.hf import quiet_transformers
        from tunelab.models.registry import resolve_model

        quiet_transformers()
        _set_threads()
        self.name = model
        self.precision = inference_precision(precision, torch.device("cpu"))
        if (Path(model).expanduser() / "tunelab.json").is_file():  # a tunelab run (any method)
            import tunelab

            tuned = tunelab.load(Path(model).expanduser(), precision=self.precision)
            self.path, self.tokenizer, self.model = str(tuned.run_dir), tuned.tokenizer, tuned.model
        else:
            self.path = resolve_model(model).path
            self.tokenizer = AutoTokenizer.from_pretrained(self.path)
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            self.model = AutoModel.from_pretrained(self.path, dtype=dtype)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model.eval()
        self.max_length = max_length
        self.dim = int(self.model.config.hidden_size)  # PEFT passes config through

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length. Texts are sorted by length so
        a batch pads little; the rows come back in the order given."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                enc = self.tokenizer(
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                out[idx] = pool(self.model(**enc).last_hidden_state, enc["attention_mask"])
        return out


def pool(hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    from tunelab.tasks.sentence_embedding import mean_pool

    return mean_pool(hidden, mask).numpy()


def model_label(model: str) -> str:
    """How a KB names its encoder: the alias, or the folder's absolute path."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.is_dir() else model
