"""Model, method and hyper-parameters for a profiled data file, each with the reason for it.

The rules are the project's own measurements, not folklore: MiniLM is English-only (63% of
Chinese characters become [UNK]), so Chinese goes to Gemma 3 270M; on a CPU, full fine-tuning
of the 22M MiniLM is faster per example than LoRA and within 1.4 points of it, while the 268M
decoders train with LoRA (1% of the weights); EDA augmentation gained 10.2 points at 32 examples
per class and 1.2 at 128 (README, small data). ``max_length`` comes from the texts' token
lengths under the chosen model's own tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tunelab.planning.inspect import Profile

DECODERS = ("gemma3-270m", "smollm2-135m")
FEW_PER_CLASS = 200  # below this many examples in the smallest class, augment
IMBALANCED = 3.0  # largest class over smallest above this: class weights


@dataclass
class Choices:
    """Training keys (the flat names ``tunelab train --config`` reads) and why each was set."""

    config: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    token_lengths: list[int] = field(default_factory=list)  # of the profile's sample

    def set(self, key: str, value: Any, why: str) -> None:
        self.config[key] = value
        self.reasons[key] = why


def pick_model(p: Profile) -> tuple[str, str]:
    if p.language == "zh":
        return "gemma3-270m", (
            "Chinese text: Gemma 3 270M's vocabulary segments Chinese into words (MiniLM turns "
            "63% of Chinese characters into [UNK])"
        )
    if p.shape == "response":
        return "smollm2-135m", "English generation: SmolLM2-135M-Instruct, the smallest decoder"
    return "minilm-l6", "English: MiniLM (22.7M parameters), the fastest encoder that ships"


def pick_method(model: str, is_decoder: bool) -> tuple[str, str]:
    if is_decoder:
        return "lora", (
            f"{model} is a decoder of 135-270M weights: LoRA trains about 1% of them and keeps "
            "one frozen base in memory"
        )
    return "full", (
        "a small encoder: on a CPU full fine-tuning is faster per example than LoRA (57.7 "
        "against 45.4 examples/s) and within 1.4 points of it (README, every method side by side)"
    )


def choose(p: Profile, model: str | None = None, method: str | None = None) -> Choices:
    """The training keys for ``p``; ``model``/``method`` fixed by the user when given."""
    c = Choices()
    c.set("task", p.task, "; ".join(p.reasons[1:3]) if len(p.reasons) > 2 else p.reasons[0])
    if model:
        c.set("model", model, "as asked")
    else:
        c.set("model", *pick_model(p))
    is_decoder = _is_decoder(c.config["model"])
    if method:
        c.set("method", method, "as asked")
    else:
        c.set("method", *pick_method(c.config["model"], is_decoder))
    text_col, target_col = _columns(p)
    if text_col:
        c.set("text_column", text_col, "the text the model reads")
    if target_col:
        c.set("label_column", target_col, "what the model learns to predict")
    n = p.rows
    epochs = 10 if n < 500 else 5 if n < 2000 else 3 if n < 20000 else 2
    c.set(
        "epochs",
        float(epochs),
        f"{n:,} training rows: {epochs} passes (fewer as data grows; "
        "the best epoch's weights are kept, early stopping after 3 evaluations without gain)",
    )
    batch = 16 if is_decoder else 32
    c.set("batch_size", batch, "decoder: 16 rows a step" if is_decoder else "32 rows a step")
    c.token_lengths = _token_lengths(p, c.config["model"])
    if c.token_lengths and p.shape not in ("spans",):
        lengths = sorted(c.token_lengths)
        p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
        longest = lengths[-1]
        cap = min(512 if not is_decoder else 1024, _positions(c.config["model"]))
        max_length = int(min(cap, max(16, _round_up(p95 + 2, 8))))
        cut = sum(x + 2 > max_length for x in lengths) / len(lengths)
        c.set(
            "max_length",
            max_length,
            f"95% of the texts fit in {p95} tokens (longest {longest}); {cut:.1%} are truncated",
        )
    elif p.shape == "spans":
        window = min(384, _positions(c.config["model"]))
        c.set(
            "max_length", window, f"question answering: {window}-token windows over long contexts"
        )
        c.set("doc_stride", window // 3, "windows overlap by a third, so no answer is cut")
    if p.shape == "single" and p.smallest_class is not None:
        if p.smallest_class < FEW_PER_CLASS:
            c.set(
                "augment",
                "eda",
                f"the smallest class has {p.smallest_class} examples: EDA "
                "gained 10.2 points at 32 per class and 1.2 at 128 (README, small data)",
            )
            c.set("augment_copies", 2, "two augmented copies per example, as measured")
        imb = p.imbalance or 1.0
        if imb > IMBALANCED:
            c.set(
                "class_weights",
                "auto",
                f"classes are imbalanced ({imb:.1f}:1): each class's loss weighted by its rarity",
            )
    c.set("precision", "auto", _precision_reason())
    return c


def _columns(p: Profile) -> tuple[str | None, str | None]:
    """The columns to name in the plan (None where the task's default column is the one)."""
    from tunelab.tasks import get_task

    d_text, d_label = get_task(p.task).default_columns
    text = None if p.text_column in (d_text, "messages") else p.text_column
    target = (
        None if p.target_column == d_label or p.shape in ("pairs", "spans") else p.target_column
    )
    return text, target


def _positions(model: str) -> int:
    """The most positions ``model`` encodes (512 when its config does not say)."""
    from transformers import AutoConfig

    from tunelab.models.registry import resolve_model

    try:
        cfg = AutoConfig.from_pretrained(resolve_model(model).path)
    except Exception:  # judged later, when the run loads it
        return 512
    return int(getattr(cfg, "max_position_embeddings", None) or 512)


def _round_up(x: int, k: int) -> int:
    return (x + k - 1) // k * k


def _is_decoder(model: str) -> bool:
    if model in DECODERS:
        return True
    from tunelab.models.hf import is_causal
    from tunelab.models.registry import resolve_model

    try:
        return is_causal(resolve_model(model).path)
    except Exception:  # a hub id without access: judged by name
        return any(k in model.lower() for k in ("gpt", "llama", "gemma", "qwen", "smollm"))


def _token_lengths(p: Profile, model: str) -> list[int]:
    """Token counts of the profile's sample texts under ``model``'s tokenizer."""
    from transformers import AutoTokenizer

    from tunelab.models.registry import resolve_model

    try:
        tok = AutoTokenizer.from_pretrained(resolve_model(model).path)
    except Exception:  # no tokenizer to be had: max_length stays the default
        return []
    texts = [t for t in p.texts if t]
    if not texts:
        return []
    return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]


def _precision_reason() -> str:
    from tunelab.machine import native_bf16

    if native_bf16():
        return "auto: this CPU has native bf16 (AMX or AVX-512 BF16), so bf16 compute"
    return "auto: this CPU has no native bf16, so fp32"
