"""Sentence embeddings trained contrastively: pairs of texts that mean the same (a question and
its paraphrase, a question and its answer) in columns ``text`` and ``text_pair``; the model is
the encoder itself (mean pooling, unit length: ``mean_pool``), trained with the
multiple-negatives ranking loss (van den Oord et al., 2018; Henderson et al., 2017): in a batch
of B pairs each text must pick its own pair among the B, the other B - 1 being its negatives, by
a cross-entropy over scaled cosine similarities (scale 20, as sentence-transformers). A pair
text that occurs twice in a batch (two questions with the same answer) is not counted as a
negative of the other.

How the pair travels through the training loop, which batches one sequence per example: the two
texts are tokenised each with its special tokens and put end to end; the model splits a row at
the second occurrence of its first token ([CLS] or <bos>), embeds both halves, and returns the
(B, B) similarity matrix as its logits, whose targets are the diagonal.

Scored on a split by embedding every ``text`` and every ``text_pair``: Recall@1, Recall@5 and
MRR of each text's own pair among all of the split's. ``tunelab predict`` gives an
``embedding`` per text. The run folder is an encoder any tool loads (``tunelab assistant build
--model RUN``).
"""

from __future__ import annotations

import numpy as np
import torch

from tunelab.errors import DataError
from tunelab.tasks.base import Task, no_figures, no_tables, register_task
from tunelab.tasks.examples import Examples, read_labelled

SCALE = 20.0
DESCRIPTION = "sentence embeddings from pairs of texts that mean the same; columns: text, text_pair"


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    return read_labelled(path, text_column, label_column, lambda v, line: str(v).strip())


def make_spec(train: Examples, options: dict) -> dict:
    if len(train.texts) < 2:
        raise DataError(train.path, None, "contrastive training needs at least two pairs")
    return {"scale": SCALE, "pooling": "mean", "normalize": True}


def _start_id(tokenizer) -> int:
    for tid in (tokenizer.cls_token_id, tokenizer.bos_token_id):
        if tid is not None:
            return int(tid)
    raise DataError("", None, "the tokenizer has no [CLS] or <bos> token to mark a pair")


def encode(tokenizer, ex: Examples, spec: dict, max_length: int, label_column: str):
    start = _start_id(tokenizer)

    def ids(text: str) -> list[int]:
        x = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        return x if x and x[0] == start else [start, *x][:max_length]

    rows = [ids(a) + ids(b) for a, b in zip(ex.texts, ex.labels, strict=True)]
    return rows, [0] * len(rows)


def collate_targets(rows: list) -> torch.Tensor:
    return torch.arange(len(rows))  # each text's pair is its own row


def second_start(row: list[int]) -> int | None:
    """Where a pair's second text starts: the second occurrence of the row's first token."""
    return next((i for i in range(1, len(row)) if row[i] == row[0]), None)


def split_pairs(input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """Rows of [first ... first ...] -> two padded batches, or None when a row is one text."""
    firsts, seconds = [], []
    for row, mask in zip(input_ids, attention_mask, strict=True):
        real = row[mask.bool()].tolist()
        cut = second_start(real)
        if cut is None:
            return None
        firsts.append(real[:cut])
        seconds.append(real[cut:])
    return _batch(firsts, input_ids.device), _batch(seconds, input_ids.device)


def _batch(rows: list[list[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    from tunelab.data.batching import collate

    b = collate(rows, 0)  # the mask marks the real tokens: the padding id does not matter
    return b["input_ids"].to(device), b["attention_mask"].to(device)


def _same_pair(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, B) True where row j's second text equals row i's (j != i): a duplicate positive in
    the batch would otherwise count as a negative of its own text."""
    keys = [tuple(r[m.bool()].tolist()) for r, m in zip(ids, mask, strict=True)]
    same = torch.tensor([[a == b for b in keys] for a in keys], device=ids.device)
    return same & ~torch.eye(len(keys), dtype=torch.bool, device=ids.device)


class PairOutput(dict):
    """What the loop reads from a model output: ``logits``."""

    @property
    def logits(self) -> torch.Tensor:
        return self["logits"]


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens, then unit length, in float32 (differentiable)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(mean.float(), dim=-1)


def embed(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = model(input_ids=ids, attention_mask=mask)
    return mean_pool(out.last_hidden_state, mask)


def pair_class(base: type) -> type:
    class PairModel(base):
        """The encoder; a batch of pairs gives the (B, B) similarity matrix as logits."""

        def forward(self, input_ids=None, attention_mask=None, **kwargs):
            pairs = None
            if input_ids is not None and attention_mask is not None:
                pairs = split_pairs(input_ids, attention_mask)
            if pairs is None:
                return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
            (a, am), (b, bm) = pairs
            ea = mean_pool(super().forward(input_ids=a, attention_mask=am).last_hidden_state, am)
            eb = mean_pool(super().forward(input_ids=b, attention_mask=bm).last_hidden_state, bm)
            logits = SCALE * ea @ eb.T
            same = _same_pair(b, bm)  # another row with this row's pair: not a negative
            return PairOutput(logits=logits.masked_fill(same, float("-inf")))

    PairModel.__name__ = PairModel.__qualname__ = base.__name__  # config.json names the base
    return PairModel


def build_model(path: str, spec: dict, **load_kwargs):
    from transformers import AutoModel

    from tunelab.models.weights import load_pretrained

    model = load_pretrained(AutoModel, path, **load_kwargs)
    if getattr(model, "pooler", None) is not None:  # BERT's [CLS] pooler: unused by mean pooling
        model.pooler = None  # (and untrained weights with no gradient would upset AdaLoRA)
    model.__class__ = pair_class(type(model))
    return model


def head_module_names(model: torch.nn.Module) -> list[str]:
    return []


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, spec: dict) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits.float(), targets)


def embed_all(model, rows: list[list[int]], batch_size: int) -> np.ndarray:
    out = []
    dev = next(model.parameters()).device
    for s in range(0, len(rows), batch_size):
        ids, mask = _batch(rows[s : s + batch_size], dev)
        out.append(embed(model, ids, mask).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), dtype=np.float32)


def evaluate_split(model, tokenizer, ids, targets, spec, batch_size: int = 16, full=False) -> dict:
    was_training = model.training
    model.eval()
    firsts, seconds = [], []
    for row in ids:
        cut = second_start(row)  # every encoded row is a pair
        firsts.append(row[:cut])
        seconds.append(row[cut:])
    with torch.inference_mode():
        a = embed_all(model, firsts, batch_size)
        b = embed_all(model, seconds, batch_size)
    model.train(was_training)
    sims = a @ b.T
    own = np.diag(sims)
    ranks = (sims > own[:, None]).sum(1) + 1  # ties in the text's favour
    logits = SCALE * sims
    logits = logits - logits.max(1, keepdims=True)
    nll = -(np.diag(logits) - np.log(np.exp(logits).sum(1)))
    return {
        "recall_at_1": float((ranks == 1).mean()),
        "recall_at_5": float((ranks <= 5).mean()),
        "mrr": float((1.0 / ranks).mean()),
        "loss": float(nll.mean()),
        "n": len(ids),
    }


def predict_texts(model, texts: list, batch_size: int = 64) -> list[dict]:
    tok = model.tokenizer
    rows = [tok(str(t), truncation=True, max_length=model.max_length)["input_ids"] for t in texts]
    with torch.inference_mode():
        vecs = embed_all(model.model, rows, batch_size)
    return [{"embedding": [round(float(x), 6) for x in v]} for v in vecs]


TASK = register_task(
    Task(
        "sentence-embedding",
        DESCRIPTION,
        "FEATURE_EXTRACTION",
        "mrr",
        ("recall_at_1", "recall_at_5", "mrr", "n"),
        read_examples=read_examples,
        make_spec=make_spec,
        build_model=build_model,
        head_module_names=head_module_names,
        loss_fn=loss_fn,
        report_figures=no_figures,
        report_tables=no_tables,
        default_columns=("text", "text_pair"),
        encode=encode,
        collate_targets=collate_targets,
        evaluate_split=evaluate_split,
        metric_names=("recall_at_1", "recall_at_5", "mrr", "loss", "n"),
        predict_texts=predict_texts,
        paired=True,
    )
)
