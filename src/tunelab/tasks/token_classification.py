"""Token classification (named entities): one tag per word, entities decoded to character spans.

Input: JSONL rows ``{"tokens": [...], "tags": [...]}`` or CoNLL-style files (``.conll``,
``.bio``, ``.bmes``, ``.iob``: "token tag" per line, a blank line between sentences). BIO,
BIOES and BMES tags are accepted and converted to BIO. Sub-word alignment is "first piece": a
word's tag is learnt and predicted on its first sub-word; the other pieces are ignored (-100).
Words cut off by ``max_length`` are neither trained nor scored.

Raw text at prediction is split into words the way NER corpora are: each CJK character is a
word (as in MSRA), otherwise runs of letters/digits and single punctuation marks.

Causal (decoder-only) models see only the words to the left, which cripples tagging: whether a
word begins an entity depends on what follows. For them the input is the sentence twice and only
the second copy is labelled and predicted; its tokens attend to the whole first copy ("repetition"
as in Springer et al., 2024, *Repetition Improves Language Model Embeddings*). The spec records it
(``repeat_input``), so prediction does the same.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from tunelab.data.readers import Row, check_rows, read_file, read_rows, split_lines
from tunelab.data_policy import is_missing
from tunelab.errors import DataError
from tunelab.tasks.base import Task, register_task
from tunelab.tasks.examples import Examples, ce_options, classifier_head, softmax
from tunelab.tasks.tags import parse_tag, spans, to_bio

PEFT_TASK_TYPE = "TOKEN_CLS"
DESCRIPTION = (
    "tags per word, e.g. named entities; JSONL tokens+tags or CoNLL 'token tag' "
    "lines; BIO/BIOES/BMES"
)
DEFAULT_METRIC = "f1"
SUMMARY_METRICS = ("precision", "recall", "f1", "n")
DEFAULT_COLUMNS = ("tokens", "tags")
IGNORE = -100
CONLL = (".conll", ".bio", ".bmes", ".iob", ".bioes")


def _read_conll(path: str) -> list[Row]:
    rows: list[Row] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    for i, line in enumerate(split_lines(read_file(path)) + [""], start=1):
        if not line.strip():
            if tokens:
                rows.append(Row(start, {"tokens": tokens, "tags": tags}))
            tokens, tags, start = [], [], i + 1
            continue
        parts = line.rstrip().rsplit(None, 1)
        if len(parts) != 2:
            raise DataError(path, i, f"expected 'token tag', got {line.strip()!r}", field="tags")
        try:
            if not is_missing(parts[1]):  # a missing tag follows the reading policy
                parse_tag(parts[1])
        except ValueError as e:
            raise DataError(path, i, str(e), field="tags") from None
        tokens.append(parts[0])
        tags.append(parts[1])
    if not rows:
        raise DataError(path, 1, "file is empty")
    return rows


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    """Sentences as word lists with BIO tags; mismatches name file, line and field. A null
    token, or a missing tag (null, empty, NaN, NA, ...), follows the reading policy: refused,
    or its sentence dropped."""
    conll = Path(path).suffix.lower() in CONLL
    if conll:
        text_column, label_column = "tokens", "tags"

    def missing_item(row: Row) -> tuple[str, object, int | None] | None:
        for col in (text_column, label_column):
            seq = row.values.get(col)
            for k, x in enumerate(seq if isinstance(seq, list) else []):
                if x is None or (col == label_column and is_missing(x)):
                    return col, x, row.line + k if conll else None  # CoNLL: the token's line
        return None

    if conll:
        rows = check_rows(path, _read_conll(path), missing_in=missing_item)
    else:
        rows = read_rows(path, required=[text_column, label_column], missing_in=missing_item)
    words, tags = [], []
    for r in rows:
        w, t = r.values[text_column], r.values[label_column]
        if not (isinstance(w, list) and all(isinstance(x, str) for x in w) and w):
            raise DataError(
                path, r.line, "expected a non-empty list of token strings", field=text_column
            )
        if not (isinstance(t, list) and all(isinstance(x, str) for x in t)):
            raise DataError(path, r.line, "expected a list of tag strings", field=label_column)
        if len(w) != len(t):
            raise DataError(path, r.line, f"{len(w)} tokens but {len(t)} tags", field=label_column)
        try:
            tags.append(to_bio(t))
        except ValueError as e:
            raise DataError(path, r.line, str(e), field=label_column) from None
        words.append([x if x.strip() else "_" for x in w])  # a blank token would vanish
    return Examples(words, tags, [r.line for r in rows], str(path))


def make_spec(train: Examples, options: dict) -> dict:
    types = sorted({t.split("-", 1)[1] for seq in train.labels for t in seq if t != "O"})
    if not types:
        raise DataError(train.path, None, "no entity tags in the training data (all 'O')")
    return {
        "labels": ["O"] + [f"{p}-{t}" for t in types for p in "BI"],
        "scheme": "BIO",
        "alignment": "first-piece",
        "repeat_input": bool(options.get("causal_model")),
    }


def _word_inputs(words: list[list[str]], spec: dict) -> list[list[str]]:
    return [w + w for w in words] if spec.get("repeat_input") else words


def _scored(word_ids: list, n_words: int, spec: dict) -> list[int | None]:
    """Per token position, the word it labels (first piece only, second copy when the input is
    repeated), else None."""
    offset = n_words if spec.get("repeat_input") else 0
    out: list[int | None] = []
    prev = None
    for w in word_ids:
        out.append(w - offset if w is not None and w != prev and w >= offset else None)
        prev = w
    return out


def encode(tokenizer, ex: Examples, spec: dict, max_length: int, label_column: str):
    """Token ids and per-position label ids (first piece of each word; IGNORE elsewhere)."""
    index = {n: i for i, n in enumerate(spec["labels"])}
    enc = tokenizer(
        _word_inputs(ex.texts, spec),
        is_split_into_words=True,
        truncation=True,
        max_length=max_length,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    targets = []
    for k, (words, tags, line) in enumerate(zip(ex.texts, ex.labels, ex.lines, strict=True)):
        row = []
        for w in _scored(enc.word_ids(k), len(words), spec):
            if w is None:
                row.append(IGNORE)
                continue
            tag = tags[w]
            if tag not in index:
                raise DataError(
                    ex.path, line, f"tag '{tag}' was not seen in training", field=label_column
                )
            row.append(index[tag])
        targets.append(row)
    return enc["input_ids"], targets


def collate_targets(rows: list[list[int]]) -> torch.Tensor:
    """Pad per-position labels to the batch's longest row with IGNORE. Returns (B, T)."""
    longest = max(len(r) for r in rows)
    return torch.tensor([r + [IGNORE] * (longest - len(r)) for r in rows], dtype=torch.long)


def build_model(path: str, spec: dict, **load_kwargs):
    from transformers import AutoModelForTokenClassification

    from tunelab.models.heads import register_decoder_heads
    from tunelab.models.weights import load_pretrained

    register_decoder_heads()  # Gemma 3 has no token-classification class of its own
    names = spec["labels"]
    return load_pretrained(
        AutoModelForTokenClassification,
        path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        **load_kwargs,
    )


def loss_units(targets: torch.Tensor) -> int:
    """Labelled positions: the mean loss is over these, so accumulation weights by them."""
    return int((targets != IGNORE).sum())


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, spec: dict) -> torch.Tensor:
    # logits: (B, T, K); targets: (B, T) with IGNORE on padding, specials and later pieces
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1),
        targets.flatten(),
        ignore_index=IGNORE,
        **ce_options(spec, logits),
    )


def _word_tags(logits: list[np.ndarray], targets: list, spec: dict):
    names = spec["labels"]
    gold, pred = [], []
    for lg, tg in zip(logits, targets, strict=True):
        tg = np.asarray(tg)
        keep = tg != IGNORE
        gold.append([names[i] for i in tg[keep]])
        pred.append(to_bio([names[i] for i in lg[keep].argmax(-1)]))  # repair stray I- tags
    return gold, pred


def compute_metrics(logits: list[np.ndarray], targets: list, spec: dict) -> dict:
    """Entity-level precision/recall/F1 (seqeval, exact span and type), micro overall and per
    type, plus word-level tag accuracy."""
    from seqeval.metrics import classification_report

    gold, pred = _word_tags(logits, targets, spec)
    rep = classification_report(gold, pred, output_dict=True, zero_division=0)
    micro = rep.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    flat_g = [t for s in gold for t in s]
    flat_p = [t for s in pred for t in s]
    nll, count = 0.0, 0
    for lg, tg in zip(logits, targets, strict=True):
        tg = np.asarray(tg)
        keep = tg != IGNORE
        p = softmax(lg[keep].astype(np.float64))
        nll -= float(np.log(np.clip(p[np.arange(int(keep.sum())), tg[keep]], 1e-12, None)).sum())
        count += int(keep.sum())
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "word_accuracy": float(np.mean([g == p for g, p in zip(flat_g, flat_p, strict=True)])),
        "loss": nll / max(1, count),
        "n": len(gold),
        "per_type": {
            k: {
                "precision": float(v["precision"]),
                "recall": float(v["recall"]),
                "f1": float(v["f1-score"]),
                "support": int(v["support"]),
            }
            for k, v in rep.items()
            if not k.endswith("avg")
        },
    }


# a CJK character (one word each, as in MSRA), a run of letters/digits, or one other symbol
WORD = re.compile(
    r"[\u3400-\u9fff\uf900-\ufaff\u3040-\u30ff]|[^\W\u3400-\u9fff\uf900-\ufaff"
    r"\u3040-\u30ff]+|[^\w\s]"
)


def predict_texts(model, texts: list[str], batch_size: int = 64) -> list[dict]:
    """Raw texts in, entities with character offsets out.

    Args:
        model: a loaded TunedModel (tokenizer, torch model, spec).
    Returns:
        per text ``{"entities": [{"text", "type", "start", "end", "score"}]}``; ``end`` is
        exclusive, so ``text[start:end]`` is the entity; ``score`` is the mean probability of
        the predicted tags over the entity's words.
    """
    from tunelab.data.batching import predict_logits

    spans_per_text = [[m.span() for m in WORD.finditer(t)] or [(0, 0)] for t in texts]
    words = [[t[a:b] for a, b in sp] for t, sp in zip(texts, spans_per_text, strict=True)]
    enc = model.tokenizer(
        _word_inputs(words, model.spec),
        is_split_into_words=True,
        truncation=True,
        max_length=model.max_length,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    logits = predict_logits(model.model, enc["input_ids"], model.pad_id, batch_size, per_token=True)
    names = model.spec["labels"]
    out = []
    for k, (text, sp) in enumerate(zip(texts, spans_per_text, strict=True)):
        probs = softmax(logits[k].astype(np.float64))
        first = {
            w: pos
            for pos, w in enumerate(_scored(enc.word_ids(k), len(sp), model.spec))
            if w is not None
        }  # word -> its first piece (words cut by max_length missing)
        order = sorted(first)
        tags = to_bio([names[int(probs[first[w]].argmax())] for w in order])
        conf = [float(probs[first[w]].max()) for w in order]
        ents = []
        for typ, a, b in spans(tags):
            start, end = sp[order[a]][0], sp[order[b]][1]
            ents.append(
                {
                    "text": text[start:end],
                    "type": typ,
                    "start": int(start),
                    "end": int(end),
                    "score": float(np.mean(conf[a : b + 1])),
                }
            )
        out.append({"entities": ents})
    return out


def report_figures(
    plots: Path, split: str, logits, targets, spec: dict, metrics: dict
) -> list[tuple[str, str]]:
    from tunelab.plots import plot_f1_bars

    plot_f1_bars(
        {t: v["f1"] for t, v in metrics["per_type"].items()},
        "entity F1",
        f"entity F1 per type ({split})",
        plots / "per_type_f1.png",
    )
    return [(f"Entity F1 per type ({split})", "per_type_f1.png")]


def report_tables(metrics: dict) -> list[tuple[str, tuple, list[tuple]]]:
    rows = [
        (t, v["precision"], v["recall"], v["f1"], v["support"])
        for t, v in metrics["per_type"].items()
    ]
    return [("Per entity type", ("type", "precision", "recall", "F1", "support"), rows)]


TASK = register_task(
    Task(
        "token-classification",
        DESCRIPTION,
        PEFT_TASK_TYPE,
        DEFAULT_METRIC,
        SUMMARY_METRICS,
        read_examples=read_examples,
        make_spec=make_spec,
        build_model=build_model,
        head_module_names=classifier_head,
        loss_fn=loss_fn,
        report_figures=report_figures,
        report_tables=report_tables,
        default_columns=DEFAULT_COLUMNS,
        encode=encode,
        collate_targets=collate_targets,
        loss_units=loss_units,
        compute_metrics=compute_metrics,
        predict_texts=predict_texts,
        per_token=True,
        softmax_loss=True,
    )
)
