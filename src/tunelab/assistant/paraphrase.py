"""Paraphrases of FAQ questions written by a small decoder (``tunelab assistant tune
--paraphrase-model smollm2-135m``), for the retriever's training pairs: users ask in other
words than the FAQ's, and EDA edits (``pairs``) keep the FAQ's words.

The decoder samples ``copies`` rewrites of each question (temperature sampling, a seed per
run) by continuing a few-shot list of FAQ questions and users' wordings (asked in a chat turn
instead, SmolLM2-Instruct answered the question more often than it rewrote it). A rewrite is
kept only when it is one line of a plausible length, differs from the question and from the
other rewrites, and shares a word stem with the question or its answer; then only when it is
**round-trip consistent** (Alberti et al., ACL 2019: synthetic questions filtered by whether
a model finds their source again): the untuned retriever, BM25 fused with the starting
encoder over every entry's question and answer, must rank the rewrite's own entry first. A
135M model drifts ("How do I convert a number to a string?" -> "how do I convert a string to
a number"), and such a rewrite paired with its entry would teach the retriever a wrong match.
What was kept is written beside the pairs (``paraphrases.jsonl``) to be read.
"""

from __future__ import annotations

import re

from tunelab.assistant.text import is_chinese, words
from tunelab.errors import TunelabError

FEW_SHOT = {
    "en": (
        "Each FAQ question, then how a user asked it in other words.\n\n"
        "FAQ: How do I make a Python script executable on Unix?\n"
        "User: how can I run my .py file directly like a command on linux\n\n"
        "FAQ: Can I return multiple values from a function?\n"
        "User: is there a way for one function to give back two results\n\n"
        "FAQ: {q}\nUser:"
    ),
    "zh": (
        "每个常见问题，以及用户换一种说法的提问。\n\n"
        "问题：如何申请退货？\n用户：买的东西不想要了怎么退\n\n"
        "问题：运费怎么计算？\n用户：寄过来要多少邮费啊\n\n"
        "问题：{q}\n用户："
    ),
}
_PREFIX = re.compile(
    r"^\s*(?:rewritten question|rewritten|question|user|用户|问题|改写)\s*[:：]\s*", re.I
)


def load_decoder(model: str):
    """(tokenizer, causal LM) in bf16 where the CPU computes it natively."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from tunelab.inference import _set_threads, inference_precision
    from tunelab.models.hf import quiet_transformers
    from tunelab.models.registry import resolve_model

    quiet_transformers()
    _set_threads()
    path = resolve_model(model).path
    archs = AutoConfig.from_pretrained(path).architectures or []
    if not any(a.endswith("ForCausalLM") for a in archs):
        raise TunelabError(
            f"--paraphrase-model {model}: not a decoder (its config names "
            f"{', '.join(archs) or 'no architecture'}); give one that writes text, such as "
            "smollm2-135m or gemma3-270m"
        )
    bf16 = inference_precision("auto", torch.device("cpu")) == "bf16"
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16 if bf16 else None)
    return tok, lm.eval()


def prompt(question: str) -> str:
    return FEW_SHOT["zh" if is_chinese(question) else "en"].format(q=question)


def clean(text: str) -> str:
    """The first line of a sample, without a label the model repeated or quotes around it."""
    line = next((s for s in text.strip().splitlines() if s.strip()), "")
    return _PREFIX.sub("", line).strip().strip("\"'“”「」").strip()


def keep(question: str, answer: str, rewrite: str, seen: set[str]) -> bool:
    if not rewrite or rewrite.lower() in seen or rewrite.lower() == question.lower():
        return False
    n, m = len(rewrite), len(question)
    if n < max(6, m // 3) or n > 2 * m + 40:
        return False
    return bool(set(words(rewrite)) & set(words(f"{question} {answer}")))


def paraphrase(
    pairs: list[tuple[str, str]],
    model: str = "smollm2-135m",
    copies: int = 3,
    seed: int = 42,
    temperature: float = 0.9,
    batch_size: int = 8,
    max_new_tokens: int = 48,
    log=print,
) -> dict[int, list[str]]:
    """For each (question, answer): up to ``copies`` kept rewrites of the question, by index."""
    import torch

    tok, lm = load_decoder(model)
    torch.manual_seed(seed)
    out: dict[int, list[str]] = {}
    for s in range(0, len(pairs), batch_size):
        chunk = pairs[s : s + batch_size]
        enc = tok([prompt(q) for q, _ in chunk], return_tensors="pt", padding=True)
        with torch.inference_mode():
            gen = lm.generate(
                **enc,
                do_sample=True,
                temperature=temperature,
                top_p=0.95,
                num_return_sequences=copies,
                max_new_tokens=max_new_tokens,
                pad_token_id=tok.pad_token_id,
            )[:, enc["input_ids"].shape[1] :]
        texts = tok.batch_decode(gen, skip_special_tokens=True)
        for j, (q, a) in enumerate(chunk):
            seen: set[str] = set()
            for t in texts[j * copies : (j + 1) * copies]:
                r = clean(t)
                if keep(q, a, r, seen):
                    seen.add(r.lower())
                    out.setdefault(s + j, []).append(r)
        log(f"paraphrased {min(s + batch_size, len(pairs)):,} of {len(pairs):,} questions")
    return out


def round_trip(
    rewrites: dict[int, list[str]], entries: list, encoder, depth: int = 1
) -> dict[int, list[str]]:
    """The rewrites whose own entry the untuned retriever (BM25 fused with ``encoder`` over
    the entries' questions, variants and answers) ranks within ``depth``."""
    import numpy as np

    from tunelab.assistant import kb as kbmod
    from tunelab.assistant.index import BM25Index, DenseIndex

    keys = kbmod.make_keys(entries)
    texts = [k[2] for k in keys]
    kb = kbmod.KnowledgeBase(
        entries, keys, encoder, DenseIndex(encoder.encode(texts)), BM25Index.build(texts), {}
    )
    flat = [(i, r) for i, rs in rewrites.items() for r in rs]
    vecs = encoder.encode([r for _, r in flat]) if flat else np.zeros((0, 1))
    out: dict[int, list[str]] = {}
    for (i, r), v in zip(flat, vecs, strict=True):
        if i in [c.entry for c in kb.search(r, vector=v, rescore=False)[:depth]]:
            out.setdefault(i, []).append(r)
    return out
