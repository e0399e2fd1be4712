"""Continued pre-training (tunelab pretrain, the language-modeling task) on tiny models built
here: whole-word masks, packed causal blocks, perplexity falling on the held-out text, the
output folder fine-tuned by `tunelab train --model`, and clear errors for bad text."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from conftest import FILLER, NEG, POS, toy_rows, write_csv
from tunelab.cli import main
from tunelab.tasks import TASKS
from tunelab.tasks import language_modeling as lm
from tunelab.tasks.examples import Examples

WORDS = ["xylophone", "quartz", "jukebox", "zephyr", "wizard", *POS, *NEG, *FILLER]


def _docs(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) for _ in range(n)]


def _tok(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def test_whole_word_masking_masks_all_of_a_word_or_none(tiny_model_dir):
    tok = _tok(tiny_model_dir)
    docs = _docs(60, 1)
    ex = Examples(docs, docs, list(range(len(docs))), "t")
    spec = lm.make_spec(ex, {"causal_model": False})
    rows, targets = lm.encode(tok, ex, spec, 64, "text")
    masked = total = 0
    for text, ids, t in zip(docs, rows, targets, strict=True):
        enc = tok(text.split(), is_split_into_words=True, add_special_tokens=False)
        owners = enc.word_ids()
        labels = t["labels"][1:-1]  # without [CLS] and [SEP]
        assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
        by_word: dict[int, set[bool]] = {}
        for w, lab in zip(owners, labels, strict=True):
            by_word.setdefault(w, set()).add(lab != lm.IGNORE)
        assert all(len(v) == 1 for v in by_word.values())  # whole words only
        for pos, lab in enumerate(labels):
            if lab != lm.IGNORE:
                assert lab == enc["input_ids"][pos]  # the target is the original token
        masked += sum(lab != lm.IGNORE for lab in labels)
        total += len(labels)
    assert 0.12 < masked / total < 0.25  # about 15%, rounded up to whole words
    again = lm.encode(tok, ex, spec, 64, "text")
    assert again == (rows, targets)  # the same masks from the same seed


def test_chinese_words_come_from_jieba():
    assert lm.words("我很喜欢这家餐厅的服务") == ["我", "很", "喜欢", "这家", "餐厅", "的", "服务"]
    assert lm.words("great  phone") == ["great", "phone"]


def test_causal_blocks_pack_documents_with_an_end_token_and_predict_the_next(tiny_lm_dir):
    tok = _tok(tiny_lm_dir)
    docs = ["good movie", "bad phone really", "great"]
    ex = Examples(docs, docs, [1, 2, 3], "t")
    rows, targets = lm.encode(tok, ex, {"objective": "causal"}, 4, "text")
    stream = []
    for d in docs:
        stream += tok(d, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    bos = tok.bos_token_id
    assert all(r[0] == bos and len(r) <= 4 for r in rows)
    assert [t for r in rows for t in r[1:]] == stream  # packed, nothing lost or repeated
    for r, t in zip(rows, targets, strict=True):
        assert t["labels"] == [*r[1:], lm.IGNORE]


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    from conftest import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny-llama-pt"))


def _pretrain(model: Path, text: Path, out: Path, *extra: str) -> int:
    args = ["pretrain", "--model", str(model), "--text", str(text), "--output-dir", str(out)]
    args += ["--epochs", "8", "--batch-size", "8", "--max-length", "32", "--no-progress"]
    args += ["--learning-rate", "3e-3", "--report-to", "none", *extra]
    return main(args)


@pytest.mark.parametrize("kind", ["masked", "causal"])
def test_pretraining_lowers_held_out_perplexity_and_the_folder_fine_tunes(
    kind, learnable_model_dir, tiny_lm_dir, tmp_path, capsys
):
    base = learnable_model_dir if kind == "masked" else tiny_lm_dir
    folder = tmp_path / "text"
    folder.mkdir()
    for i, doc in enumerate(_docs(80, 2)):  # a folder: one document per file
        (folder / f"{i:03d}.txt").write_text(doc + "\n")
    out = tmp_path / "pt"
    assert _pretrain(base, folder, out, "--validation-ratio", "0.1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    before = metrics["before_training"]["validation"]["perplexity"]
    after = metrics["validation"]["perplexity"]
    assert after < 0.7 * before, (before, after)
    info = json.loads((out / "tunelab.json").read_text())
    assert info["task"] == "language-modeling" and info["target"]["objective"] == kind
    # the output is a model folder: fine-tune a classifier from it
    rows = toy_rows(32, 3)
    data = write_csv(tmp_path / "cls.csv", rows)
    args = ["train", "--model", str(out), "--train", str(data), "--validation", str(data)]
    args += ["--epochs", "1", "--max-length", "32", "--no-progress", "--report-to", "none"]
    assert main([*args, "--output-dir", str(tmp_path / "cls")]) == 0
    assert json.loads((tmp_path / "cls" / "tunelab.json").read_text())["task"] == (
        "text-classification"
    )


def test_replay_mixes_general_text_in(learnable_model_dir, tmp_path, capsys):
    text = tmp_path / "domain.txt"
    text.write_text("\n".join(_docs(40, 4)) + "\n")
    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"text": d}) + "\n" for d in _docs(30, 5)))
    out = tmp_path / "pt"
    assert _pretrain(learnable_model_dir, text, out, "--replay", str(general), "--epochs", "1") == 0
    printed = capsys.readouterr().out
    summary = json.loads([x for x in printed.splitlines() if x.startswith("{")][-1])
    assert summary["documents"] == {"train": 38, "replay": 8}  # 40 - 2 held out; 0.2 x 38
    train = (out.parent / "pt.text-data" / "train.jsonl").read_text().splitlines()
    assert len(train) == 46


def test_bad_text_gets_a_one_line_error(learnable_model_dir, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _pretrain(learnable_model_dir, empty, tmp_path / "o1") != 0
    err = capsys.readouterr().err
    assert "no .txt or .md file in this folder" in err and "Traceback" not in err
    (empty / "a.txt").write_text("fine text here\n")
    (empty / "b.txt").write_bytes(b"\x00\x01\x02binary")
    assert _pretrain(learnable_model_dir, empty, tmp_path / "o2") != 0
    err = capsys.readouterr().err
    assert "b.txt" in err and "binary file" in err
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    assert _pretrain(learnable_model_dir, blank, tmp_path / "o3") != 0
    assert "no text to train on" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


def test_the_task_is_registered_for_encoders_and_decoders():
    task = TASKS["language-modeling"]
    assert task.baseline_before_training and task.default_metric == "perplexity"
