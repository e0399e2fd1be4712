"""The sentence-embedding task on a tiny BERT built here: contrastive training learns pairs it
could not match before, the run folder is an ordinary encoder (AutoModel, the assistant's
Encoder and `predict` agree), a duplicate positive in a batch is not a negative, and the pairs
made from an FAQ never contain an evaluation question."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import NEG, POS, write_csv
from tunelab.assistant.encoder import Encoder
from tunelab.cli import main
from tunelab.errors import TunelabError
from tunelab.tasks.sentence_embedding import _same_pair, split_pairs

MATE = dict(zip(POS, NEG, strict=True))  # each "good" word's pair is a "bad" word


def _pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.sample(POS, 3)
        rows.append({"text": " ".join(words), "text_pair": " ".join(MATE[w] for w in words)})
    return rows


def test_training_learns_pairs_and_the_run_is_an_encoder(learnable_model_dir, tmp_path):
    train = write_csv(tmp_path / "train.csv", _pairs(96, 1), ("text", "text_pair"))
    val = write_csv(tmp_path / "val.csv", _pairs(32, 2), ("text", "text_pair"))
    out = tmp_path / "run"
    args = ["train", "--task", "sentence-embedding", "--model", str(learnable_model_dir)]
    args += ["--train", str(train), "--validation", str(val), "--output-dir", str(out)]
    args += ["--epochs", "12", "--batch-size", "16", "--learning-rate", "3e-3"]
    assert main([*args, "--report-to", "none", "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    rows = _pairs(32, 2)
    before = Encoder(str(learnable_model_dir), precision="fp32")
    after = Encoder(str(out), precision="fp32")

    def mrr(enc: Encoder) -> float:
        a = enc.encode([r["text"] for r in rows])
        b = enc.encode([r["text_pair"] for r in rows])
        sims = a @ b.T
        ranks = (sims > np.diag(sims)[:, None]).sum(1) + 1
        return float((1 / ranks).mean())

    assert abs(mrr(after) - metrics["mrr"]) < 1e-3  # the run's own figure, recomputed
    assert mrr(after) > mrr(before) + 0.2, (mrr(before), mrr(after))
    # weight-space mixing with the base (WiSE-FT): 1 is the run, 0 the base, between is neither
    mixer = Encoder(str(out), precision="fp32", keep_mixing=True)
    few = [r["text"] for r in rows[:6]]
    assert np.allclose(mixer.encode(few), after.encode(few), atol=1e-5)
    mixer.set_mix(0.0)
    assert np.allclose(mixer.encode(few), before.encode(few), atol=1e-5)
    mixer.set_mix(0.5)
    half = mixer.encode(few)
    assert not np.allclose(half, before.encode(few), atol=1e-3)
    assert not np.allclose(half, after.encode(few), atol=1e-3)
    assert np.allclose(Encoder(str(out), precision="fp32", mix=0.5).encode(few), half, atol=1e-5)
    # a KB built on the run with a given mix records it, and loads the same encoder back
    from tunelab.assistant import kb as kbmod
    from tunelab.assistant.sources import Entry

    faq = [Entry(id=f"e{i}", question=r["text"], answer=r["text_pair"]) for i, r in enumerate(rows)]
    asked = [(r["text"], f"e{i}") for i, r in enumerate(rows[:8])] + [("zzz qqq", None)]
    kbmod.build(faq, tmp_path / "kb", str(out), [], validation=asked, mix=0.5, log=lambda m: None)
    assert json.loads((tmp_path / "kb" / "kb.json").read_text())["encoder"]["mix"] == 0.5
    loaded = kbmod.KnowledgeBase.load(tmp_path / "kb")
    assert np.allclose(loaded.encoder.encode(few), half, atol=1e-2)  # auto precision: bf16
    # without validation questions the mix is measured on the FAQ questions the run never
    # trained on (a training text among the entries is left out of the measure)
    seen = {t.lower() for r in _pairs(96, 1) for t in r.values()}
    extra = Entry(id="t", question=_pairs(96, 1)[0]["text"], answer="x y z")
    kbmod.build([*faq, extra], tmp_path / "kb2", str(out), [], log=lambda m: None)
    mixed = json.loads((tmp_path / "kb2" / "kb.json").read_text())["encoder"]
    assert set(mixed["tried"]) == {"1.0", "0.75", "0.5", "0.25"}
    unseen = sum(r["text"].lower() not in seen for r in rows)
    assert 0 < unseen < len(rows) + 1
    assert {t["questions"] for t in mixed["tried"].values()} == {unseen}
    # the run folder is a plain encoder: AutoModel reads it, and predict gives the same vectors
    from transformers import AutoModel

    plain = AutoModel.from_pretrained(out).eval()
    enc = after.tokenizer(["good great fine"], return_tensors="pt")
    with torch.no_grad():
        h = plain(**enc).last_hidden_state.mean(1)
    v = torch.nn.functional.normalize(h, dim=-1).numpy()[0]
    assert np.allclose(after.encode(["good great fine"])[0], v, atol=1e-4)
    texts = tmp_path / "texts.txt"
    texts.write_text("good great fine\n", encoding="utf-8")
    pred = tmp_path / "pred.jsonl"
    assert (
        main(["predict", "--model-dir", str(out), "--input", str(texts), "--output", str(pred)])
        == 0
    )
    got = json.loads(pred.read_text().splitlines()[0])["embedding"]
    assert np.allclose(got, v, atol=1e-4)


def test_a_duplicate_positive_in_a_batch_is_not_a_negative():
    ids = torch.tensor([[101, 5, 6, 101, 7, 0], [101, 8, 101, 7, 0, 0], [101, 9, 101, 4, 0, 0]])
    mask = (ids != 0).long()
    (a, am), (b, bm) = split_pairs(ids, mask)
    assert a.tolist() == [[101, 5, 6], [101, 8, 0], [101, 9, 0]]
    assert b.tolist() == [[101, 7], [101, 7], [101, 4]]
    same = _same_pair(b, bm)
    assert same.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    single = torch.tensor([[101, 5, 6]])
    assert split_pairs(single, torch.ones_like(single)) is None  # one text: a plain forward


@pytest.mark.parametrize(
    "shop,rewrite",
    [("zh", "换货要多久才能寄回来"), ("en", "how long until my exchange is shipped")],
)
def test_faq_pairs_never_contain_an_evaluation_question(tmp_path, shop, rewrite):
    from tunelab.assistant.calibrate import read_questions
    from tunelab.assistant.pairs import make_pairs
    from tunelab.assistant.sources import read_faq

    repo = Path(__file__).resolve().parents[1]
    faq = read_faq(repo / "data" / "assistant" / f"{shop}_shop_faq.jsonl")
    ev = repo / "data" / "assistant" / f"{shop}_shop_faq_eval.jsonl"
    questions = {q for q, _ in read_questions(str(ev), {e.id for e in faq})}
    # an evaluation question planted as a variant, or written by the decoder, must not reach a
    # pair either
    planted = sorted(questions)
    faq[0].variants.append(planted[0])
    rewrites = {1: [planted[1], rewrite]}
    pairs = make_pairs(faq, paraphrases=2, exclude=questions, rewrites=rewrites)
    assert any(a == rewrite for split in pairs.values() for a, _ in split)
    texts = {t.strip().lower() for split in pairs.values() for p in split for t in p}
    assert pairs["train"] and pairs["validation"]
    assert not texts & {q.strip().lower() for q in questions}
    train_q = {a for a, _ in pairs["train"]} | {b for _, b in pairs["train"]}
    val_q = {a for a, _ in pairs["validation"]} | {b for _, b in pairs["validation"]}
    assert not {e.question for e in faq if e.question in val_q} & train_q  # held-out entries


def test_a_lora_retriever_is_folded_for_queries_and_mixes_with_its_base(
    learnable_model_dir, tmp_path
):
    """The encoder folds a LoRA adapter into the weights (no adapter matmuls per query): the
    same vectors as the adapter model tunelab.load gives; mix 0 is the base model."""
    import tunelab
    from tunelab.assistant.encoder import pool

    train = write_csv(tmp_path / "train.csv", _pairs(64, 3), ("text", "text_pair"))
    val = write_csv(tmp_path / "val.csv", _pairs(16, 5), ("text", "text_pair"))
    out = tmp_path / "lora"
    args = ["train", "--task", "sentence-embedding", "--model", str(learnable_model_dir)]
    args += ["--train", str(train), "--validation", str(val)]
    args += ["--output-dir", str(out), "--method", "lora"]
    args += ["--epochs", "3", "--batch-size", "16", "--learning-rate", "3e-3"]
    assert main([*args, "--report-to", "none", "--no-progress"]) == 0
    few = [r["text"] for r in _pairs(6, 4)]
    folded = Encoder(str(out), precision="fp32", keep_mixing=True)
    assert "lora" not in " ".join(n for n, _ in folded.model.named_modules()).lower()
    adapter = tunelab.load(out, precision="fp32")
    enc = adapter.tokenizer(few, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = pool(adapter.model(**enc).last_hidden_state, enc["attention_mask"])
    assert np.allclose(folded.encode(few), want, atol=1e-5)
    base = Encoder(str(learnable_model_dir), precision="fp32").encode(few)
    assert not np.allclose(want, base, atol=1e-3)  # the adapter changed something
    folded.set_mix(0.0)
    assert np.allclose(folded.encode(few), base, atol=1e-5)


def test_decoder_rewrites_are_filtered_and_written_per_question(tmp_path):
    """A rewrite is kept only when it is one plausible line that differs from the question and
    shares a word with the entry; a tiny random decoder runs the sampling path end to end."""
    from conftest import make_tiny_llama
    from tunelab.assistant import paraphrase as para

    assert (
        para.clean('Rewritten question: "how do I undo a commit"\nmore') == "how do I undo a commit"
    )
    assert para.clean("用户：怎么退货") == "怎么退货"
    q, a = "How do I return an item?", "Send it back within 30 days."
    seen: set[str] = set()
    assert para.keep(q, a, "can I send back something I bought", seen)
    assert not para.keep(q, a, "How do I return an item?", seen)  # the question itself
    assert not para.keep(q, a, "what is the weather like in Paris today", seen)  # off topic
    assert not para.keep(q, a, "return", seen)  # too short
    assert not para.keep(q, a, "item " * 60, seen)  # too long
    seen.add("can i send back something i bought")
    assert not para.keep(q, a, "Can I send back something I bought", seen)  # a repeat
    with pytest.raises(TunelabError, match="not a decoder"):
        para.load_decoder("minilm-l6")  # an encoder writes nothing
    lm = make_tiny_llama(tmp_path / "lm")
    got = para.paraphrase(
        [(q, a), ("何时发货", "下单后两天内发货")], str(lm), copies=3, log=lambda m: None
    )
    pairs = [(q, a), ("何时发货", "下单后两天内发货")]
    for i, texts in got.items():
        assert len(texts) <= 3 and len(set(texts)) == len(texts)
        assert all(para.keep(*pairs[i], t, set()) for t in texts)
