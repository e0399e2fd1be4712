"""Packed training batches (tunelab.training.packing): rows within width, the padded batch's
logits and gradients, where packing applies, and a packed run end to end."""

from __future__ import annotations

import json
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import (
    FILLER,
    make_tiny_llama,
    tiny_bert_config,
    tiny_decoder_config,
    toy_rows,
    write_csv,
)
from tunelab.data.batching import collate
from tunelab.training import packing


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_rows_hold_every_text_once_within_the_width(lengths):
    width = max(lengths)
    rows = packing.pack_rows(lengths, width)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    fills = [sum(lengths[i] for i in r) for r in rows]
    assert max(fills) <= width
    # first fit: a later row's texts would have gone into an earlier row with room, so at
    # most one row is half empty
    assert sum(2 * f <= width for f in fills) <= 1, fills


def _tiny_decoder(kind: str, num_labels: int = 3):
    from transformers import AutoModelForSequenceClassification

    common = dict(num_key_value_heads=1, pad_token_id=0, num_labels=num_labels)
    if kind == "gemma3":  # a sliding window shorter than the texts: the window is per text
        common.update(head_dim=16, sliding_window=4)
    cfg = tiny_decoder_config(50, kind, attn_implementation="eager", **common)
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(cfg)


@pytest.mark.parametrize("kind", ["gemma3", "llama"])
def test_packed_batch_gives_the_padded_batch_logits_and_gradients(kind):
    """The property packing rests on: the head's scores at each text's last token, with the
    texts laid end to end, are the padded batch's pooled logits; so are the gradients."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        _tiny_decoder(kind),
        LoraConfig(
            task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"
        ),
    )
    for name, p in model.named_parameters():  # LoRA B starts at 0: give it weights to check
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    rng = random.Random(0)
    seqs = [[rng.randrange(1, 50) for _ in range(n)] for n in (7, 3, 12, 5, 1, 9, 2, 11)]
    target = torch.tensor([rng.randrange(3) for _ in seqs])

    def run(logits_of):
        model.zero_grad()
        logits = logits_of()
        torch.nn.functional.cross_entropy(logits, target).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return logits.detach(), grads

    padded, g_padded = run(lambda: model(**collate(seqs, 0)).logits)
    scores = packing.PackedScores(model)
    inputs, ends = packing.collate_packed(seqs, 0)
    assert inputs["input_ids"].shape[0] < len(seqs)  # texts share rows
    packed, g_packed = run(lambda: (model(**inputs), scores.take(ends))[1])
    scores.close()
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)
    assert g_packed.keys() == g_padded.keys() and len(g_packed) > 4
    for n in g_padded:
        torch.testing.assert_close(g_packed[n], g_padded[n], atol=1e-5, rtol=1e-4, msg=n)


def test_packing_applies_to_decoder_sequence_heads_and_per_token_methods():
    from peft import LoraConfig, PromptTuningConfig, get_peft_model
    from transformers import BertForSequenceClassification

    from tunelab.methods.prefix import PrefixModel

    assert packing.applies(_tiny_decoder("llama"))
    assert not packing.applies(_tiny_decoder("llama"), adversarial=True)
    lora = LoraConfig(task_type="SEQ_CLS", r=2, target_modules="all-linear")
    assert packing.applies(get_peft_model(_tiny_decoder("gemma3"), lora))
    prompt = PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=3)
    assert not packing.applies(get_peft_model(_tiny_decoder("llama"), prompt))
    assert not packing.applies(PrefixModel(_tiny_decoder("llama"), 3))
    bert = BertForSequenceClassification(tiny_bert_config(50, num_labels=2))
    assert not packing.applies(bert)  # an encoder pools its first token, not the last


def _varied_rows(n: int, seed: int) -> list[dict]:
    """The toy sentiment rows with 0-12 extra filler words: texts of different lengths."""
    rng = random.Random(seed)
    return [
        {
            "text": r["text"] + " " + " ".join(rng.choices(FILLER, k=rng.randrange(13))),
            "label": r["label"],
        }
        for r in toy_rows(n, seed)
    ]


def test_decoder_classification_run_trains_on_packed_batches(tmp_path):
    """A tiny Llama classifier trains on packed batches by default (recorded in tunelab.json and
    announced), learns the toy task, and --no-packing falls back to length-grouped batches."""
    from conftest import train_args
    from tunelab.cli import main

    model = make_tiny_llama(tmp_path / "llama")
    data = {
        split: write_csv(tmp_path / f"{split}.csv", _varied_rows(n, seed))
        for split, n, seed in (("train", 96, 1), ("validation", 32, 2), ("test", 32, 3))
    }
    for extra, batching in (((), "packed"), (("--no-packing",), "length-grouped")):
        out = tmp_path / batching
        assert main(train_args(model, data, out, "--method", "full", *extra)) == 0
        assert json.loads((out / "tunelab.json").read_text())["batching"] == batching
        metrics = json.loads((out / "metrics.json").read_text())
        if batching == "packed":
            assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]
