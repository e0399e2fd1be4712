"""Continued pre-training on raw text (Gururangan et al., 2020, "Don't Stop Pretraining"): the
model keeps learning its pre-training objective on the user's domain before it is fine-tuned.

- **Encoders** (MiniLM, BERT): masked language modelling with **whole-word masking**: words are
  chosen until about 15% of a block's tokens are covered (a word that would overshoot is
  passed over for a shorter one), and all of a chosen word's sub-words are
  predicted (80% replaced by [MASK], 10% by a random token, 10% kept, per word). Chinese words
  come from jieba, whose words BERT's tokenizer would otherwise cut into single characters
  (the Chinese-BERT-wwm recipe); other text splits at white space. The masks are drawn once per
  block from a fixed seed, so the validation perplexity before and after training is measured
  on the same masked tokens. A model that ships without its masked-LM head (the MiniLM sentence
  encoder) gets one tied to its word embeddings, whose transform starts as the identity.
- **Decoders** (SmolLM2, Gemma): causal language modelling on documents packed end to end, an
  end-of-sequence token after each, cut into blocks of ``max_length`` (each opening with the
  beginning-of-sequence token where the tokenizer has one).

Scored by perplexity (``exp`` of the mean cross-entropy over the predicted tokens), before
training too. The run folder holds the whole model: ``tunelab train --model RUN`` fine-tunes
it like any pretrained folder. ``tunelab pretrain`` is the command that prepares the text.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import torch

from tunelab.errors import DataError
from tunelab.tasks.base import Task, no_figures, no_tables, register_task
from tunelab.tasks.examples import Examples
from tunelab.tasks.generation import IGNORE, collate_targets  # the same per-position targets

MLM_PROBABILITY = 0.15
MASK_SEED = 0
DESCRIPTION = (
    "continued pre-training on raw text: masked LM (whole words) for encoders, causal LM for "
    "decoders; column: text (see tunelab pretrain)"
)
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    from tunelab.data.readers import read_rows

    rows = read_rows(path, required=[text_column], non_empty=[text_column])
    texts = [str(r.values[text_column]) for r in rows]
    return Examples(texts, list(texts), [r.line for r in rows], str(path))


def make_spec(train: Examples, options: dict) -> dict:
    if not train.texts:
        raise DataError(train.path, None, "no text to train on")
    causal = bool(options.get("causal_model"))
    spec: dict = {"labels": [], "objective": "causal" if causal else "masked"}
    if not causal:
        spec.update(mlm_probability=MLM_PROBABILITY, whole_word=True, mask_seed=MASK_SEED)
    return spec


def words(text: str) -> list[str]:
    """Whole words: jieba's for text with Chinese characters, else white-space separated."""
    if _CJK.search(text):
        import jieba

        jieba.setLogLevel(60)
        return [w for w in jieba.lcut(text) if w.strip()]
    return text.split()


def _masked_blocks(
    tokenizer, text: str, spec: dict, max_length: int, rng: random.Random, vocab: list[int]
):
    """``vocab``: the ids a masked token may be replaced by at random (no special tokens)."""
    enc = tokenizer(words(text), is_split_into_words=True, add_special_tokens=False)
    ids, word_of = enc["input_ids"], enc.word_ids()
    size = max(1, max_length - 2)
    for start in range(0, len(ids), size):
        block, owners = ids[start : start + size], word_of[start : start + size]
        groups: dict[int, list[int]] = {}
        for pos, w in enumerate(owners):
            groups.setdefault(w if w is not None else -1 - pos, []).append(pos)
        order = list(groups.values())
        rng.shuffle(order)
        want = max(1, round(len(block) * spec["mlm_probability"]))
        inputs, labels, covered = list(block), [IGNORE] * len(block), 0
        for group in order:
            if covered >= want:
                break
            if covered and covered + len(group) > want:
                continue  # a long word that would overshoot: try a shorter one (as BERT-wwm)
            roll = rng.random()
            for pos in group:
                labels[pos] = block[pos]
                if roll < 0.8:
                    inputs[pos] = tokenizer.mask_token_id
                elif roll < 0.9:
                    inputs[pos] = rng.choice(vocab)
            covered += len(group)
        cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        yield [cls, *inputs, sep], [IGNORE, *labels, IGNORE]


def _causal_blocks(tokenizer, texts: list[str], max_length: int):
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    stream: list[int] = []
    for t in texts:
        stream += tokenizer(t, add_special_tokens=False)["input_ids"]
        if eos is not None:
            stream.append(eos)
    size = max(2, max_length - (bos is not None))
    for start in range(0, len(stream), size):
        block = ([bos] if bos is not None else []) + stream[start : start + size]
        if len(block) < 2:
            continue
        # each position's target is the next token (shifted here, so the loss needs no shift)
        yield block, [*block[1:], IGNORE]


def encode(tokenizer, ex: Examples, spec: dict, max_length: int, label_column: str):
    """Blocks of token ids and their per-position targets (IGNORE where nothing is predicted)."""
    rows: list[list[int]] = []
    targets: list[dict] = []
    if spec["objective"] == "causal":
        blocks = _causal_blocks(tokenizer, list(ex.texts), max_length)
    else:
        if tokenizer.mask_token_id is None:
            raise DataError(ex.path, None, "masked-LM training needs a tokenizer with a mask token")
        rng = random.Random(spec.get("mask_seed", MASK_SEED))
        special = set(tokenizer.all_special_ids)
        vocab = [i for i in range(len(tokenizer)) if i not in special]  # once, not per text
        blocks = (
            b for t in ex.texts for b in _masked_blocks(tokenizer, t, spec, max_length, rng, vocab)
        )
    for ids, labels in blocks:
        rows.append(ids)
        targets.append({"labels": labels})
    if not rows:
        raise DataError(ex.path, None, "no text to train on after tokenization")
    return rows, targets


def loss_units(targets: torch.Tensor) -> int:
    return int((targets != IGNORE).sum())


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, spec: dict) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE
    )


def build_model(path: str, spec: dict, **load_kwargs):
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from tunelab.models.weights import load_pretrained

    if spec["objective"] == "causal":
        return load_pretrained(AutoModelForCausalLM, path, **load_kwargs)
    model = load_pretrained(AutoModelForMaskedLM, path, **load_kwargs)
    if not _has_lm_head(Path(path)):
        init_mlm_head(model)
    return model


def _has_lm_head(folder: Path) -> bool:
    """Whether the folder's weights hold a masked-LM head (``cls.predictions``, ``lm_head``)."""
    from safetensors import safe_open

    from tunelab.models.weights import weight_files

    shards = weight_files(folder) if folder.is_dir() else None
    if not shards:
        return True  # a hub id or .bin checkpoint: Transformers loads what it has
    for f in shards:
        with safe_open(str(f), "pt") as st:
            if any("predictions" in k or k.startswith("lm_head") for k in st.keys()):
                return True
    return False


def init_mlm_head(model: torch.nn.Module) -> None:
    """A fresh masked-LM head that starts close to the encoder: the transform's dense layer as
    the identity, its layer norm plain, the output bias zero (the output weights are the word
    embeddings, tied), so before training it scores words by their embeddings' similarity to
    the hidden state instead of at random."""
    with torch.no_grad():
        for name, module in model.named_modules():
            if not any(k in name for k in ("predictions", "lm_head")):
                continue
            if (
                isinstance(module, torch.nn.Linear)
                and module.weight.shape[0] == module.weight.shape[1]
            ):
                module.weight.copy_(torch.eye(module.weight.shape[0]))
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        for name, p in model.named_parameters():
            if name.endswith("predictions.bias") or name.endswith("decoder.bias"):
                p.zero_()
    tie = getattr(model, "tie_weights", None)
    if callable(tie):  # the output layer is the word-embedding table
        tie()


def head_module_names(model: torch.nn.Module) -> list[str]:
    return []


@torch.inference_mode()
def _nll(model, ids: list[list[int]], targets: list[dict], pad_id: int, batch_size: int):
    from tunelab.data.batching import collate, sorted_batches

    device = next(model.parameters()).device
    total, count = 0.0, 0
    for batch in sorted_batches([len(x) for x in ids], batch_size):
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id).items()}
        labels = collate_targets([targets[i] for i in batch]).to(device)
        logits = model(**inputs).logits.float()
        total += float(
            torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum"
            )
        )
        count += loss_units(labels)
    return total, count


def perplexity(total: float, count: int) -> float:
    """exp of the mean cross-entropy (capped at e^50 so an untrained head stays finite)."""
    return float(math.exp(min(total / max(count, 1), 50.0)))


def evaluate_split(model, tokenizer, ids, targets, spec, batch_size: int = 16, full=False) -> dict:
    from tunelab.models.hf import pad_id

    was = model.training
    model.eval()
    total, count = _nll(model, ids, targets, pad_id(tokenizer), batch_size)
    model.train(was)
    return {
        "perplexity": perplexity(total, count),
        "loss": total / max(count, 1),
        "tokens": count,
        "n": len(ids),
    }


def predict_texts(model, texts: list, batch_size: int = 16) -> list[dict]:
    """Per text: its perplexity under the model (masked: on the seeded whole-word masks)."""
    out = []
    for t in texts:
        ex = Examples([str(t)], [str(t)], [0], "<input>")
        ids, targets = encode(model.tokenizer, ex, model.spec, model.max_length, "text")
        total, count = _nll(model.model, ids, targets, model.pad_id, batch_size)
        out.append({"perplexity": round(perplexity(total, count), 4)})
    return out


TASK = register_task(
    Task(
        "language-modeling",
        DESCRIPTION,
        "FEATURE_EXTRACTION",
        "perplexity",
        ("perplexity", "loss", "n"),
        read_examples=read_examples,
        make_spec=make_spec,
        build_model=build_model,
        head_module_names=head_module_names,
        loss_fn=loss_fn,
        report_figures=no_figures,
        report_tables=no_tables,
        default_columns=("text", "text"),
        encode=encode,
        collate_targets=collate_targets,
        loss_units=loss_units,
        evaluate_split=evaluate_split,
        metric_names=("perplexity", "loss", "tokens", "n"),
        predict_texts=predict_texts,
        per_token=True,
        baseline_before_training=True,
    )
)
