"""Generation on a tiny Llama built in the test: response-only loss, chat template, prompt
truncation, ROUGE-L, before/after scores, predict and reload."""

from __future__ import annotations

import json
import random

import pytest
import torch

import tunelab
from conftest import FILLER, NEG, POS
from tunelab.cli import main
from tunelab.errors import DataError
from tunelab.tasks import generation as gen

SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>"]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def _tokenizer(chat: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIAL + POS + NEG + FILLER + ["positive", "negative", "review", "<|system|>"]
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=t, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    if chat:
        tok.chat_template = TEMPLATE
    return tok


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    """A 2-layer Llama with a word-level tokenizer and a chat template."""
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tie_word_embeddings=True)


def _rows(n: int, seed: int) -> list[dict]:
    """Prompt: a few words with two cue words; response: 'positive review' or 'negative
    review' after the cues."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pos = i % 2 == 0
        words = rng.sample(FILLER, 3) + rng.sample(POS if pos else NEG, 2)
        rng.shuffle(words)
        rows.append(
            {"prompt": " ".join(words), "response": "positive review" if pos else "negative review"}
        )
    return rows


@pytest.fixture(scope="module")
def gen_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    out = {}
    for split, n, seed in (("train", 128, 1), ("validation", 24, 2), ("test", 24, 3)):
        p = d / f"{split}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in _rows(n, seed)))
        out[split] = p
    return out


def test_loss_covers_only_the_response(tiny_lm_dir):
    tok = _tokenizer(chat=True)
    ex = gen.Examples(
        ["good movie", [{"role": "user", "content": "bad phone"}]],
        ["positive review", "negative review"],
        [1, 2],
        "x.jsonl",
    )
    ids, targets = gen.encode(tok, ex, gen.make_spec(ex, {}), 32, "response")
    for x, t in zip(ids, targets, strict=True):
        n = t["prompt_len"]
        assert set(t["labels"][:n]) == {gen.IGNORE}
        assert t["labels"][n:] == x[n:]
        assert x[n - 1] == tok.convert_tokens_to_ids("<|assistant|>")  # template applied
        assert x[-1] == tok.eos_token_id
    assert (
        tok.decode(ids[0][targets[0]["prompt_len"] :], skip_special_tokens=True)
        == "positive review"
    )


def test_long_prompt_is_cut_but_keeps_the_template_and_response():
    tok = _tokenizer(chat=True)
    ex = gen.Examples([" ".join(FILLER * 5)], ["positive review"], [1], "x.jsonl")
    ids, targets = gen.encode(tok, ex, gen.make_spec(ex, {}), 16, "response")
    assert len(ids[0]) <= 16
    n = targets[0]["prompt_len"]
    assert ids[0][0] == tok.convert_tokens_to_ids("<|user|>")
    assert ids[0][n - 1] == tok.convert_tokens_to_ids("<|assistant|>")
    assert tok.decode(ids[0][n:], skip_special_tokens=True) == "positive review"


def test_without_chat_template_prompt_and_response_are_plain_text():
    tok = _tokenizer(chat=False)
    ex = gen.Examples(["good movie"], ["positive review"], [1], "x.jsonl")
    ids, targets = gen.encode(tok, ex, gen.make_spec(ex, {}), 32, "response")
    assert tok.decode(ids[0][: targets[0]["prompt_len"]]) == "good movie"


def test_rouge_l():
    # normalised: "cat sat on mat" vs "cat on mat": LCS 3, precision 3/4, recall 1
    assert gen.rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(6 / 7)
    assert gen.rouge_l("a b c", "x y z") == 0.0
    assert gen.rouge_l("新闻标题", "新闻") == pytest.approx(2 / 3)


def test_chat_rows_and_bad_rows(tmp_path):
    f = tmp_path / "chat.jsonl"
    f.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                ]
            }
        )
        + "\n"
        + json.dumps({"messages": [{"role": "user", "content": "hi"}]})
        + "\n"
    )
    with pytest.raises(DataError) as e:
        gen.read_examples(str(f), "prompt", "response")
    assert str(e.value).startswith(f"{f}:2: field 'messages': the last message must be")


def test_generation_trains_improves_and_reloads(tiny_lm_dir, gen_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "generation",
                "--model",
                str(tiny_lm_dir),
                "--train",
                str(gen_data["train"]),
                "--validation",
                str(gen_data["validation"]),
                "--test",
                str(gen_data["test"]),
                "--max-length",
                "32",
                "--max-new-tokens",
                "4",
                "--epochs",
                "15",
                "--batch-size",
                "16",
                "--learning-rate",
                "1e-2",
                "--method",
                "lora",
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    before, after = metrics["before_training"]["test"], metrics["test"]
    assert after["rouge_l"] > before["rouge_l"] + 0.3, (before, after)
    assert after["perplexity"] < before["perplexity"]
    assert after["samples"][0]["reference"] in ("positive review", "negative review")
    assert "before fine-tuning" in (out / "report.html").read_text()

    m = tunelab.load(out)
    preds = m.predict([r["prompt"] for r in _rows(8, 3)])
    assert all(set(p) == {"generated"} for p in preds)
    agree = sum(p["generated"] == r["response"] for p, r in zip(preds, _rows(8, 3), strict=True))
    assert agree / 8 == pytest.approx(
        sum(s["generated"] == s["reference"] for s in after["samples"]) / 8
    )
    capsys.readouterr()
    assert main(["evaluate", "--model-dir", str(out), "--data", str(gen_data["test"])]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["rouge_l"] == pytest.approx(after["rouge_l"])


def test_prefix_tuning_trains_a_decoder_and_reloads(tiny_lm_dir, gen_data, tmp_path):
    """prefix-tuning (generation only): only the prefixes train; reload predicts the same."""
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "generation",
                "--model",
                str(tiny_lm_dir),
                "--train",
                str(gen_data["train"]),
                "--validation",
                str(gen_data["validation"]),
                "--max-length",
                "32",
                "--max-new-tokens",
                "4",
                "--epochs",
                "3",
                "--batch-size",
                "16",
                "--method",
                "prefix-tuning",
                "--num-virtual-tokens",
                "4",
                "--output-dir",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    info = json.loads((out / "tunelab.json").read_text())
    assert info["parameters"]["trainable"] == 2 * 2 * 4 * 32  # layers * (k, v) * tokens * dim
    losses = [json.loads(x)["loss"] for x in (out / "train_log.jsonl").open() if '"train"' in x]
    assert losses[-1] < losses[0]
    prompts = [r["prompt"] for r in _rows(4, 5)]
    assert tunelab.load(out).predict(prompts) == tunelab.load(out).predict(prompts)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_decoding_matches_model_generate_token_for_token(tiny_lm_dir, dtype):
    """tunelab's own greedy loop (KV cache, one token per row per step) picks exactly the
    tokens of ``model.generate(do_sample=False)`` on left-padded batches of mixed lengths,
    in fp32 and in bf16, and stops rows at a stop token the way it does."""
    from transformers import AutoModelForCausalLM

    from tunelab.tasks.generation import greedy

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval().to(dtype)
    torch.manual_seed(0)
    vocab = model.config.vocab_size
    prompts = [torch.randint(3, vocab, (n,)).tolist() for n in (5, 9, 2, 7)]
    longest = max(map(len, prompts))
    ids = torch.zeros((len(prompts), longest), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, longest - len(p) :] = torch.tensor(p)
        mask[row, longest - len(p) :] = 1

    def reference(**stop) -> torch.Tensor:  # model.generate's new tokens
        return model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=12,
            do_sample=False,
            pad_token_id=0,
            **stop,
        )[:, longest:]

    with torch.inference_mode():
        free = reference()
        assert torch.equal(greedy(model, ids, mask, 12, [], 0), free)
        # stop on the token the first row produces third: that row ends there, padded after
        stop = int(free[0, 2])
        ref = reference(eos_token_id=stop)
        ours = greedy(model, ids, mask, 12, [stop], 0)
        # two stop tokens, rows leaving the batch at different steps
        stops = [stop, int(free[1, 5])]
        ref2 = reference(eos_token_id=stops)
        ours2 = greedy(model, ids, mask, 12, stops, 0)
    assert torch.equal(ours, ref)
    assert (ours[0, 3:] == 0).all()
    assert torch.equal(ours2, ref2)


def test_response_only_logits_give_the_same_loss(tiny_lm_dir):
    """Training asks a causal LM for logits from the first response position on; the loss is
    the full-logits loss."""
    from transformers import AutoModelForCausalLM

    from tunelab.data.batching import response_window

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    torch.manual_seed(0)
    ids = torch.randint(4, 20, (3, 12))
    tgt = torch.full((3, 12), -100)
    for row, start in enumerate((5, 7, 9)):
        tgt[row, start:] = ids[row, start:]
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    full = gen.loss_fn(model(**inputs).logits, tgt, {})
    cut_inputs, cut_tgt = response_window(inputs, tgt)
    assert cut_inputs["logits_to_keep"] == 8 and cut_tgt.shape == (3, 8)
    cut = gen.loss_fn(model(**cut_inputs).logits, cut_tgt, {})
    assert torch.allclose(full, cut, atol=1e-6)


def test_response_nll_scores_the_responses_only_and_matches_full_logits(tiny_lm_dir):
    """Validation's loss asks for logits from the first response position on (Gemma's
    full-vocabulary logits over whole prompts took gigabytes); the sum is the full one's."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir).eval()
    torch.manual_seed(1)
    rows, targets = [], []
    for plen, rlen in ((6, 3), (9, 2), (4, 5)):
        ids = torch.randint(4, 20, (plen + rlen,)).tolist()
        rows.append(ids)
        targets.append({"labels": [-100] * plen + ids[plen:], "prompt_len": plen})
    total, count = gen.response_nll(model, rows, targets, pad_id=0, batch_size=3)
    want, n = 0.0, 0
    for ids, t in zip(rows, targets, strict=True):  # one row at a time, every logit
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
        gold = torch.tensor(t["labels"][1:])
        want += float(
            torch.nn.functional.cross_entropy(logits, gold, ignore_index=-100, reduction="sum")
        )
        n += int((gold != -100).sum())
    assert count == n == 10
    assert total == pytest.approx(want, rel=1e-5)


def test_the_lm_head_gets_a_contiguous_input_while_training(tiny_lm_dir):
    """With logits for the last positions only, the head's input is a strided slice; training
    hands it a contiguous copy (else matmul broadcasts the vocabulary-sized weight per
    sequence), with the same logits and gradients, and the hook goes when the job closes."""
    from transformers import AutoModelForCausalLM

    from tunelab.training.supervised import ContiguousHead

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dir)
    seen: list[bool] = []
    probe = model.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: seen.append(args[0].is_contiguous())
    )
    ids = torch.randint(4, 20, (3, 12))
    model(input_ids=ids, logits_to_keep=5).logits.sum().backward()
    plain = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    head = ContiguousHead(model)
    model(input_ids=ids, logits_to_keep=5).logits.sum().backward()
    hooked = [p.grad for p in model.parameters() if p.grad is not None]
    head.close()
    model(input_ids=ids, logits_to_keep=5)
    probe.remove()
    assert seen == [False, True, False]  # strided without the hook, contiguous with it
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, hooked, strict=True))
