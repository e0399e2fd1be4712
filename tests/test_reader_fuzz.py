"""Property-based fuzzing (Hypothesis) of every reader of users' files: any bytes in a data
file give either examples or one DataError line naming the file and the line (or the file
alone where no line applies), under every reading policy, never another exception.

The inputs are random bytes, random CSV/TSV made of cells that are delimiters, quotes, line
breaks, missing-value markers and long or odd text, JSONL and SQuAD JSON built from random JSON
values under the keys the tasks read, and CoNLL lines. Derandomized with a bounded number of
examples, so CI sees the same cases every time (about 15 s on 2 cores)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.cli import main
from tunelab.data.readers import read_rows, read_texts
from tunelab.data_policy import ReadPolicy, reading_policy
from tunelab.errors import DataError
from tunelab.tasks import generation, multi_label, regression
from tunelab.tasks import question_answering as qa
from tunelab.tasks import text_classification as tc
from tunelab.tasks import token_classification as tok

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ODD = ["NaN", "nan", "NA", "N/A", "null", "NULL", "none", "None", "", " ", "pos", "neg", "x"]
ODD += ["1e999", "-1", "2.5", "9" * 30, "\u2028", "\x1c", "\x85", "\x00", "\ud800", "a;b"]
ODD += ["a;NaN", '"', "é中", "x" * 40, "O", "B-PER", "<big>", "<deep>"]
# in JSON, the strings "<big>" and "<deep>" become what json.dumps cannot write: an integer too
# long for int() and arrays nested deeper than the parser's recursion limit
RAW = {'"<big>"': "9" * 5000, '"<deep>"': "[" * 3000 + "]" * 3000}
PIECES = [",", "\t", "\n", "\r\n", "\r", '"', " ", "{", "[", "]", "\\ud800", "\ufeff"]
TAGS = ["O", "B-PER", "I-PER", "M-LOC", "E-LOC", "S-ORG", "B_X", "NaN", "null", "", "PER", "I-"]
KEYS = ["text", "label", "labels", "y", "tokens", "tags", "question", "context", "answers"]
KEYS += ["prompt", "response", "messages", "role", "content", "data", "paragraphs", "qas"]

odd_text = st.sampled_from(ODD) | st.text(max_size=12)
words = st.sampled_from([False] * 5 + [True]).flatmap(  # real-looking text, sometimes odd
    lambda r: st.sampled_from(ODD) if r else st.text(min_size=1, max_size=12)
)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=10,
)
value = st.sampled_from([False] * 5 + [True]).flatmap(lambda r: json_value if r else odd_text)


def mostly(common: st.SearchStrategy, rare: st.SearchStrategy) -> st.SearchStrategy:
    """``common`` five times in six, else ``rare`` (``st.one_of`` picks its branches evenly)."""
    return st.sampled_from([False] * 5 + [True]).flatmap(lambda r: rare if r else common)


def _sometimes(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """``strategy``, or now and then any JSON value in its place."""
    return mostly(strategy, json_value)


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate becomes invalid UTF-8


def _with_garbage(base: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """``base``, often as it is, else with random bytes spliced in (bad UTF-8, NUL, cut)."""
    spliced = st.tuples(base, st.integers(0, 300), st.binary(max_size=4)).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
    anything = st.binary(max_size=200) | st.lists(st.sampled_from(PIECES + ODD), max_size=20).map(
        lambda p: _encode("".join(p))
    )
    return mostly(base, spliced | anything)


def _quoted(cell: str, quote: bool) -> str:
    return '"' + cell.replace('"', '""') + '"' if quote else cell


def delimited(*header: str, tab: bool = False) -> st.SearchStrategy[bytes]:
    """CSV/TSV with this header: rows of odd cells, mostly the right number, quoted or not."""
    cell = st.tuples(mostly(odd_text, st.sampled_from(PIECES)), st.booleans())
    right = st.lists(cell, min_size=len(header), max_size=len(header))
    ragged = st.lists(cell, min_size=len(header) - 1, max_size=len(header) + 1)
    rows = st.lists(mostly(right, ragged), min_size=1, max_size=5)
    # mostly the file's own delimiter, sometimes the other one
    delimiter = mostly(st.just("\t"), st.just(",")) if tab else mostly(st.just(","), st.just("\t"))
    return st.tuples(rows, delimiter).map(
        lambda t: _encode(
            t[1].join(header)
            + "\n"
            + "".join(t[1].join(_quoted(c, q) for c, q in r) + "\n" for r in t[0])
        )
    )


def _json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    for marker, raw in RAW.items():
        text = text.replace(marker, raw)
    return text


def jsonl(row: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    rows = mostly(st.lists(row, min_size=1, max_size=4), st.lists(row | json_value, max_size=4))
    return rows.map(lambda rs: _encode("".join(_json(r) + "\n" for r in rs)))


def rows_with(**columns: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """JSON rows that usually have these keys, sometimes another odd key."""
    full = st.fixed_dictionaries(columns, optional={"extra": json_value})
    return mostly(full, st.fixed_dictionaries({}, optional=columns))


@st.composite
def tagged(draw) -> dict:
    n = draw(st.integers(0, 4))
    tokens = draw(_sometimes(st.lists(odd_text, min_size=n, max_size=n)))
    tags = draw(st.lists(st.sampled_from(TAGS), min_size=n, max_size=n + draw(st.integers(0, 1))))
    return draw(rows_with(tokens=st.just(tokens), tags=_sometimes(st.just(tags))))


@st.composite
def question(draw) -> dict:
    """A SQuAD row whose answer usually sits at its offset, in either answer layout."""
    context = draw(words)
    start = draw(st.integers(-1, len(context)))
    text = context[max(start, 0) : draw(st.integers(start, len(context) + 1))]
    good = [
        {"text": [text], "answer_start": [start]},
        [{"text": text, "answer_start": start}],
        json.dumps({"text": [text], "answer_start": [start]}),  # as a CSV cell holds it
    ]
    bad = [{"text": [text, text], "answer_start": [start]}, [], {"text": text, "answer_start": 1}]
    answers = draw(mostly(st.sampled_from(good), st.sampled_from(bad) | json_value))
    return draw(
        rows_with(
            context=mostly(st.just(context), value),
            question=mostly(words, value),
            answers=st.just(answers),
        )
    )


def _csv(rows: list[dict], columns: tuple[str, ...]) -> bytes:
    """Rows as a CSV file: strings as they are, other values as JSON."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(r[c] if isinstance(r.get(c), str) else json.dumps(r.get(c)) for c in columns)
    return _encode(out.getvalue())


qas = st.lists(_sometimes(question()), min_size=1, max_size=3)
paragraph = rows_with(context=mostly(words, value), qas=_sometimes(qas))
article = rows_with(paragraphs=_sometimes(st.lists(_sometimes(paragraph), min_size=1, max_size=3)))
qa_csv = st.lists(question(), min_size=1, max_size=4).map(
    lambda rows: _csv(rows, ("context", "question", "answers"))
)
squad = _sometimes(
    st.lists(_sometimes(article), min_size=1, max_size=3).map(lambda data: {"data": data})
).map(lambda doc: _encode(_json(doc)))
token_line = st.tuples(st.text(min_size=1, max_size=5) | odd_text, st.sampled_from(TAGS)).map(
    " ".join
)
conll = st.lists(
    mostly(token_line, st.sampled_from(["", " "]) | odd_text),
    min_size=1,
    max_size=8,
).map(lambda lines: _encode("\n".join(lines)))
message = rows_with(role=st.sampled_from(["user", "assistant", "system"]) | value, content=value)
chat = rows_with(prompt=value, response=value, messages=st.lists(message, max_size=3) | json_value)
texts = st.lists(odd_text | st.sampled_from(PIECES), max_size=8).map(
    lambda lines: _encode("\n".join(lines))
)

POLICIES = st.sampled_from(
    [ReadPolicy(), ReadPolicy(drop_missing=True), ReadPolicy(max_field_chars=6)]
)
labelled = jsonl(rows_with(text=mostly(words, value), label=value, labels=value | st.lists(words)))
numbers = st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.just(10**400)
rated_rows = rows_with(text=mostly(words, value), label=mostly(numbers, value))
rated = jsonl(rated_rows)
rated_csv = st.lists(rated_rows, min_size=1, max_size=4).map(lambda r: _csv(r, ("text", "label")))


def _tc(p: str):
    return tc.read_examples(p, "text", "label")


# reader name -> (file suffix, what its files look like, how it reads one)
READERS = {
    "rows.csv": (".csv", delimited("text", "label"), lambda p: read_rows(p, ["text"], ["text"])),
    "text-classification.csv": (".csv", delimited("text", "label"), _tc),
    "text-classification.tsv": (".tsv", delimited("text", "label", tab=True), _tc),
    "text-classification.jsonl": (".jsonl", labelled, _tc),
    "regression.csv": (
        ".csv",
        rated_csv,
        lambda p: regression.read_examples(p, "text", "label"),
    ),
    "regression.jsonl": (
        ".jsonl",
        rated,
        lambda p: regression.read_examples(p, "text", "label"),
    ),
    "multi-label.csv": (
        ".csv",
        delimited("text", "labels"),
        lambda p: multi_label.read_examples(p, "text", "labels"),
    ),
    "multi-label.jsonl": (
        ".jsonl",
        labelled,
        lambda p: multi_label.read_examples(p, "text", "labels"),
    ),
    "token-classification.jsonl": (
        ".jsonl",
        jsonl(tagged()),
        lambda p: tok.read_examples(p, "tokens", "tags"),
    ),
    "token-classification.conll": (
        ".conll",
        conll,
        lambda p: tok.read_examples(p, "tokens", "tags"),
    ),
    "question-answering.jsonl": (
        ".jsonl",
        jsonl(question()),
        lambda p: qa.read_examples(p, "question", "answers"),
    ),
    "question-answering.csv": (
        ".csv",
        qa_csv,
        lambda p: qa.read_examples(p, "question", "answers"),
    ),
    "question-answering.json": (
        ".json",
        squad,
        lambda p: qa.read_examples(p, "question", "answers"),
    ),
    "question-answering inputs.json": (".json", squad, lambda p: qa.read_inputs(p, "question")),
    "question-answering inputs.jsonl": (
        ".jsonl",
        jsonl(question()),
        lambda p: qa.read_inputs(p, "question"),
    ),
    "generation.jsonl": (
        ".jsonl",
        jsonl(chat),
        lambda p: generation.read_examples(p, "prompt", "response"),
    ),
    "predict texts.txt": (".txt", texts, read_texts),
    "predict texts.csv": (".csv", delimited("text", "id"), lambda p: read_texts(p, "text")),
}


def assert_one_line_naming(e: DataError, where: str) -> None:
    msg = str(e)
    assert msg.splitlines() == [msg], msg  # one line
    msg.encode("utf-8")  # printable: no lone surrogate from the file reaches the terminal
    assert e.path == where and msg.startswith(where), msg
    assert re.match(r"(:\d+)?: \S", msg[len(where) :]), msg  # file:line: or file: then why


def read_once(read, path: Path, content: bytes, policy: ReadPolicy) -> None:
    path.write_bytes(content)
    try:
        with reading_policy(policy):
            result = read(str(path))
    except DataError as e:
        assert_one_line_naming(e, str(path))
        return
    rows = getattr(result, "texts", result)
    assert isinstance(rows, list) and rows  # examples, never an empty success


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("name", READERS)
def test_any_bytes_give_examples_or_one_line_naming_file_and_line(name, fuzz_dir):
    suffix, files, read = READERS[name]
    path = fuzz_dir / f"{name.replace(' ', '_')}{suffix}"

    @FUZZ
    @given(content=_with_garbage(files), policy=POLICIES)
    def fuzz(content: bytes, policy: ReadPolicy) -> None:
        read_once(read, path, content, policy)

    fuzz()


@pytest.mark.parametrize("read", [read_texts, lambda p: qa.read_inputs(p, "question")])
def test_stdin_is_read_under_the_same_rules(read, monkeypatch):
    class Stdin:
        buffer: io.BytesIO

    @FUZZ
    @given(content=_with_garbage(texts | jsonl(question())), policy=POLICIES)
    def fuzz(content: bytes, policy: ReadPolicy) -> None:
        stdin = Stdin()
        stdin.buffer = io.BytesIO(content)
        monkeypatch.setattr(sys, "stdin", stdin)
        try:
            with reading_policy(policy):
                read(None)
        except DataError as e:
            assert_one_line_naming(e, "<stdin>")

    fuzz()


# Files the fuzzing found crashing the readers before issue 19 (each was a traceback, exit 1).
NASTY = {
    "squad.json": ('{"data": [1]}', "question-answering", "squad.json: data[0]: expected"),
    "deep.jsonl": ("[" * 100_000 + "\n", "text-classification", "deep.jsonl:1: not valid JSON"),
    "answers.jsonl": (
        '{"context": "c", "question": "q", "answers": {"text": ["c"], "answer_start": [0, 1]}}\n',
        "question-answering",
        "answers.jsonl:1: field 'answers': 'text' and 'answer_start' differ in length",
    ),
}


@pytest.mark.parametrize("name", NASTY)
def test_train_exits_2_with_one_line_on_fuzz_found_files(name, tmp_path, capsys):
    content, task, want = NASTY[name]
    f = tmp_path / name
    f.write_text(content, encoding="utf-8")
    args = ["train", "--task", task, "--train", str(f), "--validation", str(f)]
    assert main([*args, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tunelab: error: {tmp_path}/{want}") and err.count("\n") == 1, err


def test_the_cli_process_exits_2_without_a_traceback(tmp_path):
    """A fresh ``tunelab`` process on a fuzz-found file: exit code 2, one line, no traceback."""
    content, task, want = NASTY["squad.json"]
    (tmp_path / "squad.json").write_text(content, encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "tunelab", "train", "--task", task, "--train", "squad.json"]
        + ["--validation", "squad.json", "--output-dir", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"tunelab: error: {want}") and r.stderr.count("\n") == 1
