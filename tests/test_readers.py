"""Bad input gets one line naming file, line and field."""

import json

import pytest

from tunelab.data.readers import read_rows
from tunelab.errors import DataError
from tunelab.tasks import text_classification as tc


def w(tmp_path, name, data: bytes | str):
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return p


def test_csv_tsv_jsonl_agree(tmp_path):
    rows = [("nice film", "pos"), ('says "hi", twice', "neg")]
    csvp = w(tmp_path, "a.csv", 'text,label\nnice film,pos\n"says ""hi"", twice",neg\n')
    tsvp = w(tmp_path, "a.tsv", 'text\tlabel\nnice film\tpos\nsays "hi", twice\tneg\n')
    jp = w(
        tmp_path,
        "a.jsonl",
        "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows),
    )
    for p in (csvp, tsvp, jp):
        ex = tc.read_examples(str(p), "text", "label")
        assert list(zip(ex.texts, ex.labels, strict=True)) == rows, p
        assert ex.lines == [2, 3] if p.suffix != ".jsonl" else ex.lines == [1, 2]


def test_integer_labels_sorted_numerically(tmp_path):
    p = w(
        tmp_path,
        "a.jsonl",
        "".join(json.dumps({"text": "x", "label": v}) + "\n" for v in (10, 2, 1)),
    )
    ex = tc.read_examples(str(p), "text", "label")
    assert tc.label_names(ex.labels) == ["1", "2", "10"]


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("empty.csv", "", r"empty.csv:1: file is empty"),
        ("blank.csv", "\n\n", r"blank.csv:1: file is empty"),
        ("header.csv", "text,label\n", r"header.csv:2: file has a header but no data rows"),
        (
            "nocol.csv",
            "review,label\nok,pos\n",
            r"nocol.csv:1: field 'text': missing column 'text'",
        ),
        (
            "emptytext.csv",
            "text,label\nok,pos\n  ,neg\n",
            r"emptytext.csv:3: field 'text': is empty",
        ),
        (
            "emptylabel.csv",
            "text,label\nok,pos\nfine,\n",
            r"emptylabel.csv:3: field 'label': is empty",
        ),
        (
            "fields.csv",
            "text,label\nok,pos\nfine, really,neg\n",
            r"fields.csv:3: malformed row: expected 2 fields \(text, label\), found 3",
        ),
        ("quote.csv", 'text,label\nok,pos\n"bad"x,neg\n', r"quote.csv:3: malformed row"),
        (
            "bad.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
            r"bad.jsonl:2: not valid JSON",
        ),
        (
            "nokey.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b"}\n',
            r"nokey.jsonl:2: field 'label': missing",
        ),
        (
            "types.jsonl",
            '{"text": ["a"], "label": "x"}\n',
            r"types.jsonl:1: field 'text': expected text",
        ),
        ("dup.csv", "text,text\na,b\n", r"dup.csv:1: duplicate column name 'text'"),
        ("a.xlsx", "x", r"a.xlsx: unsupported file type '.xlsx'"),
    ],
)
def test_bad_files(tmp_path, name, content, expected):
    p = w(tmp_path, name, content)
    with pytest.raises(DataError, match=expected):
        tc.read_examples(str(p), "text", "label")


def test_non_utf8_names_line_and_byte(tmp_path):
    p = w(tmp_path, "latin.csv", b"text,label\nok,pos\ncaf\xe9 au lait,neg\n")
    with pytest.raises(DataError, match=r"latin.csv:3: not valid UTF-8 \(byte 0xe9 at column 4\)"):
        read_rows(str(p), ["text"])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: file not found"):
        read_rows(str(tmp_path / "nope.csv"))


def test_unknown_label_names_line(tmp_path):
    p = w(tmp_path, "t.csv", "text,label\na,pos\nb,neutral\n")
    ex = tc.read_examples(str(p), "text", "label")
    with pytest.raises(
        DataError,
        match=r"t.csv:3: field 'label': label 'neutral' was not seen "
        r"in training \(known labels: neg, pos\)",
    ):
        tc.label_ids(ex, ["neg", "pos"], "label")


def test_multiline_quoted_field_keeps_start_line(tmp_path):
    p = w(tmp_path, "m.csv", 'text,label\n"two\nlines",pos\nnext,neg\n  ,neg\n')
    with pytest.raises(DataError, match=r"m.csv:5: field 'text'"):
        tc.read_examples(str(p), "text", "label")
    ok = w(tmp_path, "ok.csv", 'text,label\n"two\nlines",pos\nnext,neg\n')
    assert tc.read_examples(str(ok), "text", "label").lines == [2, 4]
