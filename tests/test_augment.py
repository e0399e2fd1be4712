"""Offline augmentation: WordNet / Cilin synonyms, the four EDA edits in English and Chinese,
determinism, the file writer, its errors, and masked-LM substitution with a tiny BERT."""

from __future__ import annotations

import csv
import itertools
import json
import random
from collections import Counter
from pathlib import Path

import jieba
import pytest

from conftest import FILLER, NEG, POS, make_tiny_bert, write_csv
from tunelab.data.augment import (
    augment_file,
    augment_texts,
    chinese_synonyms,
    detect_language,
    eda,
    english_synonyms,
    mlm_substitute,
)
from tunelab.errors import TunelabError

EN = "The movie was really good and the actors were great but the ending felt slow"
ZH = "我们今天去公园玩，天气非常好，人类都很开心。"
EN_SENTS = [
    EN,
    "I love this phone because the screen is bright and the battery lasts long",
    "The service at the restaurant was terrible and the food arrived cold",
    "She quickly finished the difficult book before the meeting started",
]
ZH_SENTS = [ZH, "这部电影非常好看，演员的表演很精彩。", "今天的天气很糟糕，我们只好待在家里。"]


def key(word: str) -> str:
    return word.strip(".,!?;:'\"").lower()


def segments(text: str) -> list[str]:
    jieba.setLogLevel(60)
    return jieba.lcut(text)


# ---- synonym sources --------------------------------------------------------------------------


def test_english_synonyms_come_from_wordnet():
    syn = english_synonyms()
    assert len(syn) > 30000  # WordNet 3.0 has ~147k lemmas; single words with synonyms ~49k
    assert {"well", "beneficial"} & set(syn["good"])
    assert "film" in syn["movie"] and "movie" in syn["film"]
    assert "auto" in syn["car"]
    for word in ("good", "movie", "car", "run"):
        assert word not in syn[word] and syn[word] == sorted(syn[word])
        assert all("_" not in w and w == w.lower() and not w.endswith(")") for w in syn[word])
    assert english_synonyms() is syn  # cached


def test_chinese_synonyms_come_from_cilin():
    syn = chinese_synonyms()
    assert len(syn) > 20000
    assert "全人类" in syn["人类"] and "人类" not in syn["人类"]
    assert {"人物", "人士"} <= set(syn["人"])
    assert all(w not in lst for w, lst in syn.items())
    assert "众学生" not in syn  # 'Aa01C05@ 众学生': a single word, no synonyms
    assert "遗民" not in syn  # 'Aa01B04# 遗民 贱民 流民 ...': merely related words, skipped


def test_detect_language():
    assert detect_language(ZH) == "zh"
    assert detect_language(EN) == "en"
    assert detect_language("iPhone 15 真的很好用") == "zh"
    assert detect_language("a very long english sentence with 一 char") == "en"
    assert detect_language("") == "en"


# ---- EDA in English ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_en_synonym_replacement(seed):
    syn = english_synonyms()
    out = eda(EN, random.Random(seed), alpha=0.15, op="sr").split()
    words = EN.split()
    assert len(out) == len(words)
    changed = [(a, b) for a, b in zip(words, out, strict=True) if a != b]
    assert len(changed) == round(0.15 * len(words))
    for old, new in changed:
        assert key(new) in syn[key(old)]


@pytest.mark.parametrize("seed", range(5))
def test_en_random_insertion(seed):
    syn = english_synonyms()
    words = EN.split()
    out = eda(EN, random.Random(seed), alpha=0.15, op="ri").split()
    n = round(0.15 * len(words))
    assert len(out) == len(words) + n
    extra = Counter(out) - Counter(words)
    assert sum(extra.values()) == n
    present = {key(w) for w in words}
    for w in extra:
        assert any(key(w) in syn.get(p, ()) for p in present)


@pytest.mark.parametrize("seed", range(5))
def test_en_random_swap(seed):
    out = eda(EN, random.Random(seed), alpha=0.1, op="rs")
    assert out != EN and Counter(out.split()) == Counter(EN.split())


@pytest.mark.parametrize("seed", range(5))
def test_en_random_deletion(seed):
    words = EN.split()
    out = eda(EN, random.Random(seed), alpha=0.3, op="rd").split()
    assert 1 <= len(out) < len(words)
    it = iter(words)
    assert all(w in it for w in out)  # a subsequence: only drops words
    # alpha=1 deletes every word with probability 1, yet one word stays
    kept = eda(EN, random.Random(seed), alpha=1.0, op="rd").split()
    assert len(kept) == 1 and kept[0] in words
    assert eda("hello", random.Random(seed), alpha=1.0, op="rd") == "hello"


def test_en_punctuation_kept_and_stopwords_not_replaced():
    text = "The film, honestly, was good!"
    for seed in range(20):
        out = eda(text, random.Random(seed), alpha=0.5, op="sr").split()
        assert out[0] == "The"  # a stopword
        assert out[1].endswith(",") and out[2].endswith(",") and out[-1].endswith("!")
    assert eda("!!! ... ?", random.Random(0), op="sr") == "!!! ... ?"


# ---- EDA in Chinese ---------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_zh_synonym_replacement(seed):
    syn, seg = chinese_synonyms(), segments(ZH)
    out = eda(ZH, random.Random(seed), alpha=0.1, op="sr")  # n = 1
    options = {
        "".join(seg[:j] + [s] + seg[j + 1 :]) for j, w in enumerate(seg) for s in syn.get(w, ())
    }
    assert out in options and " " not in out


@pytest.mark.parametrize("seed", range(4))
def test_zh_random_insertion(seed):
    syn, seg = chinese_synonyms(), segments(ZH)
    out = eda(ZH, random.Random(seed), alpha=0.1, op="ri")
    synonyms = {s for w in seg for s in syn.get(w, ())}
    options = {"".join(seg[:p] + [s] + seg[p:]) for p in range(len(seg) + 1) for s in synonyms}
    assert out in options and " " not in out


@pytest.mark.parametrize("seed", range(4))
def test_zh_random_swap(seed):
    seg = segments(ZH)
    out = eda(ZH, random.Random(seed), alpha=0.1, op="rs")
    swaps = set()
    for a, b in itertools.combinations(range(len(seg)), 2):
        s = list(seg)
        s[a], s[b] = s[b], s[a]
        swaps.add("".join(s))
    assert out in swaps and out != ZH and " " not in out


@pytest.mark.parametrize("seed", range(4))
def test_zh_random_deletion(seed):
    seg = segments(ZH)
    out = eda(ZH, random.Random(seed), alpha=0.3, op="rd")
    subsequences = {
        "".join(w for w, keep in zip(seg, mask, strict=True) if keep)
        for mask in itertools.product((0, 1), repeat=len(seg))
    }
    assert out in subsequences and out != ZH and " " not in out
    assert all(p in out for p in "，。")  # punctuation is never deleted


def test_unknown_op_is_refused():
    with pytest.raises(TunelabError, match="unknown EDA operation 'xx'"):
        eda(EN, random.Random(0), op="xx")


# ---- determinism ------------------------------------------------------------------------------


def test_augment_texts_is_deterministic_and_seed_dependent():
    texts = EN_SENTS + ZH_SENTS
    first = augment_texts(texts, copies=2, seed=7)
    assert first == augment_texts(texts, copies=2, seed=7)
    assert first != augment_texts(texts, copies=2, seed=8)
    assert {i for i, _ in first} <= set(range(len(texts)))
    assert all(t and t != texts[i] for i, t in first)
    assert [i for i, _ in first] == sorted(i for i, _ in first)
    for i, t in first:  # language detected per text: Chinese stays unspaced
        if i >= len(EN_SENTS):
            assert " " not in t


def test_a_texts_result_does_not_depend_on_other_texts():
    alone = augment_texts(EN_SENTS[:2], copies=3, seed=3)
    more = augment_texts(EN_SENTS[:2] + ZH_SENTS, copies=3, seed=3)
    assert alone and [p for p in more if p[0] < 2] == alone
    # a different (longer) text before it, consuming other random numbers, changes nothing for it
    other = augment_texts([EN_SENTS[2] + " " + EN_SENTS[3], EN_SENTS[1]], copies=3, seed=3)
    assert [p for p in other if p[0] == 1] == [p for p in alone if p[0] == 1]
    # copies of one text are drawn independently
    assert len({t for i, t in alone if i == 0}) > 1


def test_augment_texts_validates_arguments():
    with pytest.raises(TunelabError, match="unknown augmentation method"):
        augment_texts([EN], method="xyz")
    with pytest.raises(TunelabError, match="needs a masked language model"):
        augment_texts([EN], method="mlm")
    with pytest.raises(TunelabError, match="alpha"):
        augment_texts([EN], alpha=0)


# ---- augment_file -----------------------------------------------------------------------------


def _folder(tmp_path: Path, rows: list[dict], fmt: str) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    for name in ("validation", "test"):
        write_csv(d / f"{name}.csv", rows[:2])
    if fmt == "csv":
        return write_csv(d / "train.csv", rows)
    path = d / "train.jsonl"
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_augment_file(tmp_path, fmt):
    rows = [{"text": t, "label": str(i % 2)} for i, t in enumerate(EN_SENTS + ZH_SENTS)]
    src = _folder(tmp_path, rows, fmt)
    before = {p.name: p.read_bytes() for p in src.parent.iterdir()}
    dst = src.with_name(f"train.aug.{fmt}")
    n_orig, n_aug = augment_file(src, dst, copies=2, seed=1)
    assert n_orig == len(rows) and n_aug > len(rows)
    assert {p.name: p.read_bytes() for p in src.parent.iterdir() if p != dst} == before
    assert sorted(p.name for p in src.parent.iterdir()) == sorted(
        [*before, dst.name]
    )  # no temp file
    if fmt == "csv":
        with open(dst, encoding="utf-8", newline="") as f:
            out = list(csv.DictReader(f))
        orig_marker = ""
    else:
        out = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
        orig_marker = None
    assert len(out) == n_orig + n_aug
    assert out[:n_orig] == [{**r, "augmented_from": orig_marker} for r in rows]
    expected = augment_texts([r["text"] for r in rows], copies=2, seed=1)
    for rec, (i, text) in zip(out[n_orig:], expected, strict=True):
        assert int(rec["augmented_from"]) == i
        assert rec["text"] == text and rec["label"] == rows[i]["label"]


def test_augment_file_finds_other_text_columns_and_refuses_overwrite(tmp_path):
    src = write_csv(tmp_path / "reviews.csv", [{"review": EN, "stars": "5"}], ("review", "stars"))
    n_orig, n_aug = augment_file(src, tmp_path / "out.csv", copies=1, seed=0)
    with open(tmp_path / "out.csv", encoding="utf-8", newline="") as f:
        out = list(csv.DictReader(f))
    assert (n_orig, n_aug) == (1, 1) and out[1]["review"] != EN and out[1]["stars"] == "5"
    with pytest.raises(TunelabError, match="output is the input"):
        augment_file(src, src)


def test_augment_file_errors_name_file_and_line(tmp_path):
    bad_col = write_csv(tmp_path / "a.csv", [{"body": EN, "label": "1"}], ("body", "label"))
    with pytest.raises(TunelabError, match=r"a\.csv:1: .*text column.*found: body, label"):
        augment_file(bad_col, tmp_path / "a_out.csv")
    bad_json = tmp_path / "b.jsonl"
    bad_json.write_text(json.dumps({"text": EN}) + "\n" + '{"text": "oops"\n', encoding="utf-8")
    with pytest.raises(TunelabError, match=r"b\.jsonl:2: not valid JSON"):
        augment_file(bad_json, tmp_path / "b_out.jsonl")
    no_text = tmp_path / "c.jsonl"
    no_text.write_text(
        json.dumps({"text": EN}) + "\n" + json.dumps({"label": 1}) + "\n", encoding="utf-8"
    )
    with pytest.raises(TunelabError, match=r"c\.jsonl:2: field 'text': missing"):
        augment_file(no_text, tmp_path / "c_out.jsonl")
    empty = tmp_path / "d.csv"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(TunelabError, match=r"d\.csv:1: file is empty"):
        augment_file(empty, tmp_path / "d_out.csv")
    with pytest.raises(TunelabError, match=r"missing\.csv: file not found"):
        augment_file(tmp_path / "missing.csv", tmp_path / "e_out.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.jsonl", "c.jsonl", "d.csv"]


# ---- masked-LM substitution -------------------------------------------------------------------

WORDS = [*POS, *NEG, *FILLER]


def tiny_mlm(d: Path, vocab: list[str]) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True).save_pretrained(d)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertForMaskedLM(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def mlm_dir(tmp_path_factory) -> Path:  # whole words only: one wordpiece per word
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    return tiny_mlm(tmp_path_factory.mktemp("tiny-mlm"), vocab)


def test_mlm_substitution(mlm_dir):
    rng = random.Random(0)
    texts = [" ".join(rng.sample(WORDS, 8)) for _ in range(6)]
    out = mlm_substitute(texts, mlm_dir, random.Random(1), alpha=0.25)
    assert out == mlm_substitute(texts, mlm_dir, random.Random(1), alpha=0.25)
    assert out != mlm_substitute(texts, mlm_dir, random.Random(2), alpha=0.25)
    for before, after in zip(texts, out, strict=True):
        a, b = before.split(), after.split()
        assert len(a) == len(b) and set(b) <= set(WORDS)
        assert (
            sum(x != y for x, y in zip(a, b, strict=True)) == 2
        )  # max(1, round(0.25 * 8)) masked, all changed


def test_mlm_never_keeps_the_original_token(mlm_dir):
    # the model's favourite word (top_k=1), then a text made only of it: all 8 must change
    first = mlm_substitute([" ".join(["good"] * 8)], mlm_dir, random.Random(0), alpha=1.0, top_k=1)[
        0
    ]
    favourite = Counter(first.split()).most_common(1)[0][0]
    out = mlm_substitute(
        [" ".join([favourite] * 8)], mlm_dir, random.Random(0), alpha=1.0, top_k=1
    )[0]
    assert len(out.split()) == 8 and favourite not in out.split()


def test_mlm_keeps_word_boundaries_with_subword_pieces(tmp_path):
    letters = "abcdefghijklmnopqrstuvwxyz"
    d = tiny_mlm(
        tmp_path,
        [
            "[PAD]",
            "[UNK]",
            "[CLS]",
            "[SEP]",
            "[MASK]",
            *WORDS,
            *letters,
            *[f"##{c}" for c in letters],
        ],
    )
    text = "the zebra movie was quirky and the plot was good"  # zebra, quirky: letter pieces
    for seed in range(5):
        out = mlm_substitute([text], d, random.Random(seed), alpha=1.0)[0]
        assert len(out.split()) == len(text.split()) and out != text


def test_mlm_long_text_keeps_its_tail(mlm_dir):
    words = WORDS * 4  # 108 words > 64 positions: processed window by window
    out = mlm_substitute([" ".join(words)], mlm_dir, random.Random(0), alpha=0.1)[0].split()
    assert len(out) == len(words)
    changed = [j for j, (x, y) in enumerate(zip(words, out, strict=True)) if x != y]
    assert len(changed) == round(0.1 * len(words))
    assert min(changed) < 62 <= max(changed)  # both windows were substituted


def test_augment_texts_with_mlm(mlm_dir):
    texts = ["the movie was really good", "this phone is awful and boring"]
    first = augment_texts(texts, method="mlm", mlm_model=mlm_dir, copies=2, seed=5)
    assert first == augment_texts(texts, method="mlm", mlm_model=mlm_dir, copies=2, seed=5)
    assert {i for i, _ in first} == {0, 1}
    assert all(len(t.split()) == len(texts[i].split()) for i, t in first)


def test_mlm_refuses_a_model_without_head(tmp_path):
    d = make_tiny_bert(tmp_path / "encoder-only")
    with pytest.raises(TunelabError, match="no masked-language-model head") as e:
        mlm_substitute(["the movie was good"], d, random.Random(0))
    assert str(d) in str(e.value) and "--mlm-model" in str(e.value)
    with pytest.raises(TunelabError, match="not a folder"):
        mlm_substitute(["x"], tmp_path / "nope", random.Random(0))
