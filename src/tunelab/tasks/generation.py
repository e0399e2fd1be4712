"""Generation: a causal language model learns to write the response to a prompt.

Input: JSONL rows ``{"prompt": ..., "response": ...}`` (or CSV columns), or chat rows
``{"messages": [{"role": "user", "content": ...}, ..., {"role": "assistant", "content": ...}]}``
whose last assistant message is the response. When the tokenizer has a chat template the prompt
is wrapped in it (as a user turn, or as the given conversation); otherwise prompt and response
are joined as plain text. The loss covers the response tokens and the end-of-sequence token
only, never the prompt. A prompt too long for ``max_length`` is cut from its end so the
response always fits.

Validation during training scores the response loss (and perplexity), which is cheap; the final
evaluation also generates greedily and scores ROUGE-L (F1 over the longest common subsequence of
words; CJK text per character) and exact match against the references. The same scores are taken
with the model *before* fine-tuning, so every run shows what training changed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tunelab.data.readers import Row, read_rows
from tunelab.data_policy import ABSENT, is_missing
from tunelab.errors import DataError
from tunelab.tasks.base import Task, register_task
from tunelab.tasks.examples import Examples, answer_tokens, normalize

PEFT_TASK_TYPE = "CAUSAL_LM"
DESCRIPTION = (
    "prompt -> response with a causal LM; JSONL prompt/response or chat messages; "
    "loss on the response only; ROUGE-L, exact match, perplexity"
)
DEFAULT_METRIC = "loss"
SUMMARY_METRICS = ("rouge_l", "exact_match", "perplexity", "loss", "n")
METRIC_NAMES = ("loss", "perplexity", "rouge_l", "exact_match")
DEFAULT_COLUMNS = ("prompt", "response")
IGNORE = -100
SAMPLES_SHOWN = 8


def _messages(value, path: str, line: int, field: str) -> list[dict]:
    if not (
        isinstance(value, list)
        and value
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        raise DataError(path, line, 'expected a list of {"role", "content"} messages', field=field)
    return value


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    """Prompts (a string, or the chat messages before the answer) and their responses. A
    missing prompt or response (absent, null, empty, NaN, NA, ...; in chat rows the messages or
    the last one's content) is refused or its row dropped, as the reading policy says."""

    def missing_part(row: Row) -> tuple[str, object, None] | None:
        v = row.values
        if "messages" in v and text_column not in v:
            msgs = v["messages"]
            last = msgs[-1] if isinstance(msgs, list) and msgs else None
            if is_missing(msgs):
                return "messages", msgs, None
            if isinstance(last, dict) and is_missing(last.get("content", ABSENT)):
                return "messages", last.get("content", ABSENT), None
            return None
        for name in (text_column, label_column):
            if is_missing(v.get(name, ABSENT)):
                return name, v.get(name, ABSENT), None
        return None

    rows = read_rows(path, missing_in=missing_part)
    prompts, responses, lines = [], [], []
    for r in rows:
        v = r.values
        if "messages" in v and text_column not in v:
            msgs = _messages(v["messages"], path, r.line, "messages")
            if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
                raise DataError(
                    path,
                    r.line,
                    "the last message must be the assistant's response, after at least one other",
                    field="messages",
                )
            prompt: str | list = msgs[:-1]
            response = msgs[-1]["content"]
        else:
            for name in (text_column, label_column):
                if not isinstance(v.get(name), str) or not v[name].strip():
                    raise DataError(path, r.line, "expected a non-empty string", field=name)
            prompt, response = v[text_column], v[label_column]
        if not response.strip():
            raise DataError(path, r.line, "empty response", field=label_column)
        prompts.append(prompt)
        responses.append(response.strip())
        lines.append(r.line)
    return Examples(prompts, responses, lines, str(path))


def make_spec(train: Examples, options: dict) -> dict:
    return {"labels": [], "max_new_tokens": int(options.get("max_new_tokens", 32))}


def prompt_ids(tokenizer, prompt: str | list, budget: int) -> list[int]:
    """Token ids of the prompt, ready for the response to follow, at most ``budget`` long.

    With a chat template the prompt becomes a user turn plus the assistant header; a long prompt
    is cut from the end of its (last) message so the template's tokens stay intact."""
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if tokenizer.chat_template:

        def render(messages):
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            return list(ids["input_ids"] if hasattr(ids, "keys") else ids)

        ids = render(msgs)
        if len(ids) <= budget:
            return ids
        last = msgs[-1]["content"]
        content = tokenizer(last, add_special_tokens=False)["input_ids"]
        keep = max(1, len(content) - (len(ids) - budget) - 2)
        cut = {**msgs[-1], "content": tokenizer.decode(content[:keep])}
        return render(msgs[:-1] + [cut])[:budget]
    text = "\n\n".join(m["content"] for m in msgs) + "\n"
    ids = tokenizer(text)["input_ids"]
    return ids[:budget]


def _response_ids(tokenizer, response: str) -> list[int]:
    ids = tokenizer(response, add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def encode(tokenizer, ex: Examples, spec: dict, max_length: int, label_column: str):
    """Prompt + response ids per example; targets carry per-position labels (IGNORE on the
    prompt), the prompt length and the reference text for generation."""
    ids, targets = [], []
    for prompt, response in zip(ex.texts, ex.labels, strict=True):
        resp = _response_ids(tokenizer, response)[: max(1, max_length // 2)]
        p = prompt_ids(tokenizer, prompt, max_length - len(resp))
        ids.append(p + resp)
        targets.append(
            {"labels": [IGNORE] * len(p) + resp, "prompt_len": len(p), "reference": response}
        )
    return ids, targets


def collate_targets(rows: list[dict]) -> torch.Tensor:
    longest = max(len(r["labels"]) for r in rows)
    return torch.tensor(
        [r["labels"] + [IGNORE] * (longest - len(r["labels"])) for r in rows], dtype=torch.long
    )


def build_model(path: str, spec: dict, **load_kwargs):
    from transformers import AutoModelForCausalLM

    from tunelab.models.weights import load_pretrained

    return load_pretrained(AutoModelForCausalLM, path, **load_kwargs)


def head_module_names(model: torch.nn.Module) -> list[str]:
    return []  # the language-model head is pretrained; methods adapt the body


def loss_units(targets: torch.Tensor) -> int:
    """Response tokens that are predicted (targets shifted by one), the loss's denominator."""
    return int((targets[:, 1:] != IGNORE).sum())


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, spec: dict) -> torch.Tensor:
    # logits: (B, T, V); position t predicts token t + 1, so shift by one
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), targets[:, 1:].flatten(), ignore_index=IGNORE
    )


def rouge_l(pred: str, ref: str) -> float:
    """ROUGE-L F1: longest common subsequence of normalised words (CJK: characters)."""
    p, r = answer_tokens(pred), answer_tokens(ref)
    if not p or not r:
        return float(p == r)
    prev = [0] * (len(r) + 1)
    for a in p:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(p), lcs / len(r)
    return 2 * precision * recall / (precision + recall)


@torch.inference_mode()
def response_nll(
    model, ids: list[list[int]], targets: list[dict], pad_id: int, batch_size: int
) -> tuple[float, int]:
    """Summed negative log-likelihood of the response tokens, and their count. The
    vocabulary projection runs only from the position before the first response token (as in
    training): over every prompt position, Gemma's 262k-word logits of a batch of 16 planner
    requests took gigabytes."""
    from tunelab.data.batching import collate, response_window, sorted_batches

    device = next(model.parameters()).device
    window = not prompt_learning(model)  # virtual tokens shift the positions: all logits
    total, count = 0.0, 0
    for batch in sorted_batches([len(x) for x in ids], batch_size):
        inputs = {k: v.to(device) for k, v in collate([ids[i] for i in batch], pad_id).items()}
        labels = collate_targets([targets[i] for i in batch]).to(device)
        if window:
            inputs, labels = response_window(inputs, labels)
        logits = model(**inputs).logits[:, :-1].float()
        gold = labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), gold.flatten(), ignore_index=IGNORE, reduction="sum"
        )
        total += float(nll)
        count += int((gold != IGNORE).sum())
    return total, count


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[list[int]],
    max_new_tokens: int,
    batch_size: int = 16,
    token_ids: bool = False,
) -> list:
    """Greedy continuations of already-encoded prompts, in input order (left-padded batches
    of similar length): texts, or with ``token_ids`` the new tokens of each (padded after a
    stop token to its batch's length, as ``model.generate`` returns them)."""
    from tunelab.data.batching import sorted_batches

    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stop = [
        t
        for t in {tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)}
        if isinstance(t, int)
    ]
    out: list = [""] * len(prompts)
    for batch in sorted_batches([len(p) for p in prompts], batch_size):
        longest = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), longest), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(batch):
            p = prompts[i]
            ids[row, longest - len(p) :] = torch.tensor(p)
            mask[row, longest - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        if prompt_learning(model):  # virtual tokens: PEFT's generate prepends them
            gen = model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad,
                eos_token_id=stop or None,
            )[:, longest:]
        else:
            gen = greedy(model, ids, mask, max_new_tokens, stop, pad)
        for row, i in enumerate(batch):
            new = gen[row].tolist()
            out[i] = new if token_ids else tokenizer.decode(new, skip_special_tokens=True).strip()
    return out


def prompt_learning(model) -> bool:
    config = getattr(model, "active_peft_config", None)
    return bool(config is not None and config.is_prompt_learning)


def greedy(
    model,
    ids: torch.Tensor,
    mask: torch.Tensor,
    max_new_tokens: int,
    stop: list[int],
    pad: int,
) -> torch.Tensor:
    """Greedy decoding with the KV cache: the tokens ``model.generate(do_sample=False)``
    picks, without its per-step machinery (logits processors, stopping criteria, input
    preparation). The prompt is run once, the vocabulary projection only at its last
    position; each step feeds one token per row. A row that produced a stop token leaves the
    batch (its cache rows are dropped), so the remaining rows run at the smaller batch size;
    it reads ``pad`` from there on, as in ``model.generate``. Stops when every row has
    stopped or after ``max_new_tokens``.

    Returns:
        (batch, steps) new token ids.
    """
    from transformers import DynamicCache

    batch = ids.shape[0]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    kw = {_cache_argument(model): cache}
    logits = model(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        **kw,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1]
    stops = torch.tensor(stop or [-1], device=ids.device)
    out = torch.full((batch, max_new_tokens), pad, dtype=torch.long, device=ids.device)
    rows = torch.arange(batch, device=ids.device)  # original row of each live row
    position = positions[:, -1:]
    steps = 0
    for step in range(max_new_tokens):
        nxt = logits.argmax(-1)
        out[rows, step] = nxt
        steps = step + 1
        live = ~torch.isin(nxt, stops)
        if steps == max_new_tokens or not bool(live.any()):
            break
        if not bool(live.all()):  # drop the rows that stopped
            keep = live.nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, nxt, mask, position = rows[keep], nxt[keep], mask[keep], position[keep]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)
        position = position + 1
        logits = model(
            input_ids=nxt[:, None],
            attention_mask=mask,
            position_ids=position,
            **kw,
            use_cache=True,
        ).logits[:, -1]
    return out[:, :steps]


def _cache_argument(model) -> str:
    """The keyword the model's forward takes its KV cache by: ``cache`` in recent
    Transformers (``past_key_values`` is deprecated there), ``past_key_values`` before."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def evaluate_split(
    model,
    tokenizer,
    ids: list[list[int]],
    targets: list[dict],
    spec: dict,
    batch_size: int = 16,
    full: bool = False,
) -> dict:
    """Response loss and perplexity; with ``full`` also generate and score ROUGE-L/EM."""
    was_training = model.training
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total, count = response_nll(model, ids, targets, pad, batch_size)
    loss = total / max(1, count)
    metrics: dict = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 50.0)),
        "n": len(ids),
        "rouge_l": None,
        "exact_match": None,
    }
    if full:
        prompts = [x[: t["prompt_len"]] for x, t in zip(ids, targets, strict=True)]
        preds = generate(model, tokenizer, prompts, spec["max_new_tokens"], batch_size)
        refs = [t["reference"] for t in targets]
        metrics["rouge_l"] = float(
            np.mean([rouge_l(p, r) for p, r in zip(preds, refs, strict=True)])
        )
        metrics["exact_match"] = float(
            np.mean([normalize(p) == normalize(r) for p, r in zip(preds, refs, strict=True)])
        )
        metrics["samples"] = [
            {"reference": r, "generated": p}
            for p, r in list(zip(preds, refs, strict=True))[:SAMPLES_SHOWN]
        ]
    model.train(was_training)
    return metrics


def predict_texts(model, prompts: list, batch_size: int = 16) -> list[dict]:
    """Prompts (strings or chat message lists) in, ``{"generated": text}`` out."""
    budget = max(8, model.max_length - model.spec["max_new_tokens"])
    ids = [prompt_ids(model.tokenizer, p, budget) for p in prompts]
    texts = generate(model.model, model.tokenizer, ids, model.spec["max_new_tokens"], batch_size)
    return [{"generated": t} for t in texts]


def report_figures(
    plots: Path, split: str, logits, targets, spec: dict, metrics: dict
) -> list[tuple[str, str]]:
    return []


def report_tables(metrics: dict) -> list[tuple[str, tuple, list[tuple]]]:
    rows = [(s["reference"], s["generated"]) for s in metrics.get("samples", [])]
    return [("Generated examples", ("reference", "generated"), rows)] if rows else []


TASK = register_task(
    Task(
        "generation",
        DESCRIPTION,
        PEFT_TASK_TYPE,
        DEFAULT_METRIC,
        SUMMARY_METRICS,
        read_examples=read_examples,
        make_spec=make_spec,
        build_model=build_model,
        head_module_names=head_module_names,
        loss_fn=loss_fn,
        report_figures=report_figures,
        report_tables=report_tables,
        default_columns=DEFAULT_COLUMNS,
        encode=encode,
        collate_targets=collate_targets,
        loss_units=loss_units,
        evaluate_split=evaluate_split,
        metric_names=METRIC_NAMES,
        predict_texts=predict_texts,
        per_token=True,
        generative=True,
        baseline_before_training=True,
    )
)
