"""Extractive question answering: the answer is a span of the context, found by start/end scores.

Input: SQuAD-style rows, one per question: JSONL (or CSV) with ``context``, ``question`` and
``answers`` (``{"text": [...], "answer_start": [...]}`` as in the Hugging Face SQuAD files, or a
list of ``{"text", "answer_start"}``), or an official SQuAD ``.json`` file (data -> paragraphs ->
qas). Every answer must sit at its character offset in the context; a mismatch is an error that
names the file, line and field.

Long contexts are cut into windows of ``max_length`` tokens that overlap by ``doc_stride``
tokens; a window that does not hold the whole answer learns to point at its first token ("no
answer here"). At prediction the best span over all windows of a question wins (start and end in
the context, end >= start, at most ``max_answer_tokens`` tokens) and is mapped back to character
offsets in the original context.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tunelab.data.readers import (
    Row,
    _decode,
    check_rows,
    parse_json,
    read_file,
    read_rows,
    split_lines,
)
from tunelab.data_policy import shown
from tunelab.errors import ConfigError, DataError
from tunelab.tasks.base import Task, register_task
from tunelab.tasks.examples import Examples, find_head, normalize, softmax, token_f1

PEFT_TASK_TYPE = "QUESTION_ANS"
DESCRIPTION = (
    "extractive answers: SQuAD-style context, question, answers with character "
    "offsets; long contexts split into overlapping windows"
)
DEFAULT_METRIC = "f1"
SUMMARY_METRICS = ("exact_match", "f1", "n")
DEFAULT_COLUMNS = ("question", "answers")
CONTEXT_COLUMN = "context"
MAX_ANSWER_TOKENS = 30
TOP_K = 20


@dataclass(frozen=True)
class Question:
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, character offset)


def _answers(value, context: str, path: str, line: int, field: str) -> tuple:
    """Normalise the two SQuAD answer layouts and check every offset against the context."""
    if isinstance(value, str):
        try:
            value = json.loads(value)  # a CSV cell holding JSON
        except (ValueError, RecursionError):  # bad syntax, too deep, a 5,000-digit number
            raise DataError(path, line, "expected JSON answers", field=field) from None
    if isinstance(value, dict) and "text" in value and "answer_start" in value:
        texts, starts = value["text"], value["answer_start"]
        if not (isinstance(texts, list) and isinstance(starts, list)):
            raise DataError(path, line, "'text' and 'answer_start' must be lists", field=field)
        if len(texts) != len(starts):
            raise DataError(path, line, "'text' and 'answer_start' differ in length", field=field)
        pairs = list(zip(texts, starts, strict=True))
    elif isinstance(value, list) and all(isinstance(a, dict) for a in value):
        try:
            pairs = [(a["text"], a["answer_start"]) for a in value]
        except KeyError as e:
            raise DataError(path, line, f"answer without {e}", field=field) from None
    else:
        raise DataError(
            path,
            line,
            'expected {"text": [...], "answer_start": [...]} or a list of {"text", "answer_start"}',
            field=field,
        )
    if not pairs:
        raise DataError(
            path, line, "no answer (unanswerable questions are not supported)", field=field
        )
    out = []
    for text, start in pairs:
        if (
            not isinstance(text, str)
            or not text
            or isinstance(start, bool)
            or not isinstance(start, int)
        ):
            raise DataError(path, line, f"bad answer {shown(text)} at {shown(start)}", field=field)
        found = context[start : start + len(text)]
        if found != text:
            raise DataError(
                path,
                line,
                f"answer {shown(text)} is not at offset {start} of the context "
                f"(found {shown(found)})",
                field=field,
            )
        out.append((text, start))
    return tuple(out)


def _squad_json(path: str) -> list[Row]:
    """Rows from an official SQuAD .json file; the 'line' is the question's index (1-based)."""
    doc = parse_json(path, None, read_file(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise DataError(path, 1, 'expected a SQuAD file: {"data": [{"paragraphs": ...}]}')
    rows: list[Row] = []
    for a, article in enumerate(doc["data"]):
        paras = article.get("paragraphs", []) if isinstance(article, dict) else None
        if not isinstance(paras, list):
            raise DataError(path, None, f'data[{a}]: expected {{"paragraphs": [...]}}')
        for p, para in enumerate(paras):
            qas = para.get("qas", []) if isinstance(para, dict) else None
            if not isinstance(qas, list):
                where = f"data[{a}].paragraphs[{p}]"
                raise DataError(path, None, f'{where}: expected {{"context": ..., "qas": [...]}}')
            for qa in qas:
                if not isinstance(qa, dict):
                    raise DataError(path, len(rows) + 1, "expected a question object in 'qas'")
                context = {CONTEXT_COLUMN: para[CONTEXT_COLUMN]} if CONTEXT_COLUMN in para else {}
                rows.append(Row(len(rows) + 1, {**context, **qa}))
    if not rows:
        raise DataError(path, 1, "no questions in the file")
    return rows


def _question_rows(path: str, text_column: str, label_column: str | None = None) -> list[Row]:
    """Rows of a SQuAD .json or a JSONL/CSV file under the reading policy: context and question
    (and the answers, given ``label_column``) must be there, else refused or dropped."""
    texts = [CONTEXT_COLUMN, text_column]
    answers = [label_column] if label_column else []

    def blank_answers(row: Row) -> tuple[str, object, None] | None:
        # answers may be an object or a list, so not a non_empty (text) column, but an empty
        # cell is missing all the same
        v = row.values.get(label_column) if label_column else None
        return (str(label_column), v, None) if isinstance(v, str) and not v.strip() else None

    if Path(path).suffix.lower() == ".json":
        rows = _squad_json(path)
        return check_rows(path, rows, [*texts, *answers], texts, answers, blank_answers)
    return read_rows(path, [*texts, *answers], texts, answers, blank_answers)


def read_examples(path: str, text_column: str, label_column: str) -> Examples:
    """Questions with their context and checked answers (``Examples.texts`` holds Question
    objects, ``labels`` the answers)."""
    items, lines = [], []
    for line, v in ((r.line, r.values) for r in _question_rows(path, text_column, label_column)):
        context, question = v.get(CONTEXT_COLUMN), v.get(text_column)
        for name, value in ((CONTEXT_COLUMN, context), (text_column, question)):
            if not isinstance(value, str) or not value.strip():
                raise DataError(path, line, "expected a non-empty string", field=name)
        assert isinstance(context, str) and isinstance(question, str)  # checked just above
        answers = _answers(v.get(label_column), context, path, line, label_column)
        items.append(Question(question.strip(), context, answers))
        lines.append(line)
    return Examples(items, [q.answers for q in items], lines, str(path))


def make_spec(train: Examples, options: dict) -> dict:
    return {
        "labels": [],
        "num_outputs": 2,
        "doc_stride": int(options.get("doc_stride", 128)),
        "max_answer_tokens": MAX_ANSWER_TOKENS,
    }


def windows(tokenizer, questions: list[Question], max_length: int, stride: int):
    """Tokenise (question, context) pairs into overlapping windows.

    Returns:
        the tokenizer's encoding; ``overflow_to_sample_mapping`` gives each window's question,
        ``offset_mapping`` the character span of each token (None outside the context).
    """
    q_len = max(
        len(tokenizer(q.question, add_special_tokens=False)["input_ids"]) for q in questions
    )
    if q_len + 8 > max_length:  # special tokens plus a few context tokens
        raise ConfigError(
            f"a question of {q_len} tokens leaves no room for its context in "
            f"max_length {max_length}; raise --max-length"
        )
    if q_len + stride + 8 >= max_length:  # the tokenizer would loop forever or fail
        stride = max(0, (max_length - q_len) // 2 - 8)
    enc = tokenizer(
        [q.question for q in questions],
        [q.context for q in questions],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=False,
        return_attention_mask=False,
    )
    for k in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(k)
        enc["offset_mapping"][k] = [
            tuple(o) if s == 1 else None for o, s in zip(enc["offset_mapping"][k], seq, strict=True)
        ]
    return enc


def encode(tokenizer, ex: Examples, spec: dict, max_length: int, label_column: str):
    """Token ids per window, and per window a target dict: gold start/end token (0 when the
    window misses the answer), its question index, token offsets and the gold answers."""
    qs: list[Question] = ex.texts
    enc = windows(tokenizer, qs, max_length, spec["doc_stride"])
    targets = []
    for k, q_idx in enumerate(enc["overflow_to_sample_mapping"]):
        q = qs[q_idx]
        offsets = enc["offset_mapping"][k]
        text, a_start = q.answers[0]
        a_end = a_start + len(text)
        start = end = 0
        ctx = [i for i, o in enumerate(offsets) if o is not None]
        if ctx and offsets[ctx[0]][0] <= a_start and offsets[ctx[-1]][1] >= a_end:
            start = next(i for i in ctx if offsets[i][1] > a_start)
            end = next(i for i in reversed(ctx) if offsets[i][0] < a_end)
        targets.append(
            {
                "start": start,
                "end": end,
                "question": int(q_idx),
                "offsets": offsets,
                "context": q.context,
                "answers": [a for a, _ in q.answers],
            }
        )
    return enc["input_ids"], targets


def collate_targets(rows: list[dict]) -> torch.Tensor:
    """(B, 2): gold start and end token per window."""
    return torch.tensor([[r["start"], r["end"]] for r in rows], dtype=torch.long)


def build_model(path: str, spec: dict, **load_kwargs):
    from transformers import AutoModelForQuestionAnswering

    from tunelab.models.heads import register_decoder_heads
    from tunelab.models.weights import load_pretrained

    register_decoder_heads()  # Gemma 3 has no question-answering class of its own
    return load_pretrained(AutoModelForQuestionAnswering, path, **load_kwargs)


def head_module_names(model: torch.nn.Module) -> list[str]:
    return find_head(model, ("qa_outputs", "qa_classifier"), "span")


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, spec: dict) -> torch.Tensor:
    # logits: (B, T, 2) start/end scores; targets: (B, 2) gold token positions
    ce = torch.nn.functional.cross_entropy
    logits = logits.float()
    return (ce(logits[..., 0], targets[:, 0]) + ce(logits[..., 1], targets[:, 1])) / 2


def best_spans(logits: list[np.ndarray], targets: list[dict], spec: dict) -> dict[int, dict]:
    """Best answer per question over all its windows: {question: {answer, start, end, score}}.

    ``score`` is the probability of the span within its window (softmax of start times softmax
    of end)."""
    best: dict[int, dict] = {}
    limit = spec.get("max_answer_tokens", MAX_ANSWER_TOKENS)
    for lg, tg in zip(logits, targets, strict=True):
        offsets = tg["offsets"]
        s_log = lg[:, 0].astype(np.float64)
        e_log = lg[:, 1].astype(np.float64)
        s_p, e_p = softmax(s_log), softmax(e_log)
        starts = np.argsort(-s_log)[:TOP_K]
        ends = np.argsort(-e_log)[:TOP_K]
        for s in starts:
            if s >= len(offsets) or offsets[s] is None:
                continue
            for e in ends:
                if e < s or e - s + 1 > limit or e >= len(offsets) or offsets[e] is None:
                    continue
                score = float(s_p[s] * e_p[e])
                q = tg["question"]
                if q not in best or score > best[q]["score"]:
                    a, b = offsets[s][0], offsets[e][1]
                    best[q] = {
                        "answer": tg["context"][a:b],
                        "start": int(a),
                        "end": int(b),
                        "score": score,
                    }
    return best


def compute_metrics(logits: list[np.ndarray], targets: list[dict], spec: dict) -> dict:
    """Exact match and token F1 (best over the gold answers, SQuAD v1.1 rules), plus the
    windows' span loss."""
    best = best_spans(logits, targets, spec)
    golds: dict[int, list[str]] = {}
    nll = 0.0
    for lg, tg in zip(logits, targets, strict=True):
        golds[tg["question"]] = tg["answers"]
        for col, pos in ((0, tg["start"]), (1, tg["end"])):
            x = lg[:, col].astype(np.float64)
            nll -= (x[pos] - x.max()) - np.log(np.exp(x - x.max()).sum())
    em, f1 = [], []
    for q, answers in golds.items():
        pred = best.get(q, {"answer": ""})["answer"]
        em.append(max(float(normalize(pred) == normalize(a)) for a in answers))
        f1.append(max(token_f1(pred, a) for a in answers))
    return {
        "exact_match": float(np.mean(em)) if em else 0.0,
        "f1": float(np.mean(f1)) if f1 else 0.0,
        "loss": nll / max(1, 2 * len(targets)),
        "n": len(golds),
        "windows": len(targets),
    }


def as_question(item) -> Question:
    """Accept {"question", "context"} dicts, (question, context) pairs or Question objects."""
    if isinstance(item, Question):
        return item
    if isinstance(item, dict):
        return Question(str(item["question"]), str(item["context"]), ())
    question, context = item
    return Question(str(question), str(context), ())


def read_inputs(path: str | None, text_column: str) -> list[tuple[dict, dict]]:
    """Questions to answer from a file (JSONL/CSV with question and context columns, or a
    SQuAD .json) or stdin (one JSON object per line). Returns (fields to echo, item) pairs."""
    import sys

    if path in (None, "-"):
        where, rows = "<stdin>", []
        for i, text in enumerate(split_lines(_decode(where, sys.stdin.buffer.read())), 1):
            if text.strip():
                v = parse_json(where, i, text)
                if not isinstance(v, dict):
                    raise DataError(where, i, "expected a JSON object with question and context")
                rows.append(Row(i, v))
        texts = [CONTEXT_COLUMN, text_column]
        rows = check_rows(where, rows, texts, texts) if rows else rows
    else:
        where, rows = path, _question_rows(path, text_column)
    out = []
    for r in rows:
        v = r.values
        for name in (text_column, CONTEXT_COLUMN):
            if not isinstance(v.get(name), str) or not v[name].strip():
                raise DataError(where, r.line, "expected a non-empty string", field=name)
        echo = {"id": v["id"]} if "id" in v else {}
        echo["question"] = v[text_column]
        out.append((echo, {"question": v[text_column], "context": v[CONTEXT_COLUMN]}))
    if not out:
        raise DataError(where, 1, "no questions")
    return out


def predict_texts(model, items: list, batch_size: int = 64) -> list[dict]:
    """Questions in, answers out.

    Args:
        items: ``{"question", "context"}`` dicts or (question, context) pairs.
    Returns:
        per question ``{"answer", "start", "end", "score"}``: ``context[start:end] == answer``,
        ``score`` is the span probability in its best window.
    """
    from tunelab.data.batching import predict_logits

    qs = [as_question(x) for x in items]
    enc = windows(model.tokenizer, qs, model.max_length, model.spec["doc_stride"])
    logits = predict_logits(model.model, enc["input_ids"], model.pad_id, batch_size, per_token=True)
    targets = [
        {"question": int(i), "offsets": enc["offset_mapping"][k], "context": qs[i].context}
        for k, i in enumerate(enc["overflow_to_sample_mapping"])
    ]
    best = best_spans(logits, targets, model.spec)
    return [best.get(i, {"answer": "", "start": 0, "end": 0, "score": 0.0}) for i in range(len(qs))]


def report_figures(
    plots: Path, split: str, logits, targets, spec: dict, metrics: dict
) -> list[tuple[str, str]]:
    return []


def report_tables(metrics: dict) -> list[tuple[str, tuple, list[tuple]]]:
    return [("Windows", ("questions", "context windows"), [(metrics["n"], metrics["windows"])])]


TASK = register_task(
    Task(
        "question-answering",
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
        compute_metrics=compute_metrics,
        predict_texts=predict_texts,
        read_inputs=read_inputs,
        per_token=True,
    )
)
