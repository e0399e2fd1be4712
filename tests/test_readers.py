"""Bad input gets one line naming file, line and field."""

import json
import re

import pytest

from tunelab import config as C
from tunelab.cli import main
from tunelab.data.readers import read_rows, read_texts
from tunelab.data_policy import ReadPolicy, current_policy, reading_policy
from tunelab.errors import DataError
from tunelab.tasks import multi_label, regression
from tunelab.tasks import question_answering as qa
from tunelab.tasks import text_classification as tc
from tunelab.tasks import token_classification as tok


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


# --- item 8: one length limit for every format ----------------------------------------------
def test_a_10mb_csv_field_meets_the_same_limit_and_flag_as_jsonl(tmp_path):
    big = "x" * 10_000_000
    csvp = w(tmp_path, "big.csv", f"text,label\nok,pos\n{big},neg\n")
    jp = w(tmp_path, "big.jsonl", '{"text": "ok", "label": "pos"}\n' + json.dumps({"text": big}))
    want = (
        "field 'text': 10,000,000 characters, over the limit of 1,000,000 characters per "
        "field; raise it with --max-field-chars (config key max_field_chars)"
    )
    for p, line in ((csvp, 3), (jp, 2)):
        with pytest.raises(DataError) as e:
            tc.read_examples(str(p), "text", "label")
        assert str(e.value) == f"{p}:{line}: {want}"
    with reading_policy(ReadPolicy(max_field_chars=10_000_000)):  # csv's own limit never fires
        assert tc.read_examples(str(csvp), "text", "label").texts[1] == big


LONG = "abcdefghijk"  # 11 characters, one over the limit below


@pytest.mark.parametrize(
    "name,content,read,line,field",
    [
        ("a.csv", f"text,label\nok,x\n{LONG},y\n", "tc", 3, "text"),
        ("a.tsv", f"text\tlabel\nok\tx\nok\t{LONG}\n", "tc", 3, "label"),
        ("a.jsonl", f'{{"text": "ok", "label": "x", "note": "{LONG}"}}\n', "tc", 1, "note"),
        ("a.txt", f"ok\n\n{LONG}\n", "texts", 3, "text"),
        ("a.conll", "abcde O\nfghij O\n", "tok", 1, "tokens"),  # 5 + space + 5
        (
            "a.json",
            json.dumps({"data": [{"paragraphs": [{"context": LONG, "qas": [{"question": "q"}]}]}]}),
            "qa",
            1,
            "context",
        ),
    ],
)
def test_every_format_has_the_same_length_limit(tmp_path, name, content, read, line, field):
    p = str(w(tmp_path, name, content))
    reader = {
        "tc": lambda: tc.read_examples(p, "text", "label"),
        "texts": lambda: read_texts(p),
        "tok": lambda: tok.read_examples(p, "tokens", "tags"),
        "qa": lambda: qa.read_examples(p, "question", "answers"),
    }[read]
    with reading_policy(ReadPolicy(max_field_chars=10)), pytest.raises(DataError) as e:
        reader()
    assert str(e.value) == (
        f"{p}:{line}: field '{field}': 11 characters, over the limit of 10 characters per "
        "field; raise it with --max-field-chars (config key max_field_chars)"
    )


# --- item 9: missing values -----------------------------------------------------------------
@pytest.mark.parametrize("marker", ["NaN", "nan", "NA", "N/A", "null", "NULL", " NaN ", ""])
def test_a_missing_label_is_an_error_naming_file_line_field(tmp_path, marker):
    p = w(tmp_path, "t.csv", f"text,label\na,pos\nb,neg\nc,{marker}\n")
    with pytest.raises(DataError) as e:
        tc.read_examples(str(p), "text", "label")
    msg = str(e.value)
    assert msg.startswith(f"{p}:4: field 'label': ") and "\n" not in msg
    assert msg.endswith("--drop-missing (config key drop_missing) to drop rows with missing values")


@pytest.mark.parametrize(
    "row",
    [
        {"text": "c", "label": None},
        {"text": "c", "label": "NaN"},
        {"text": None, "label": "pos"},
        {"text": "N/A", "label": "pos"},
        {"text": "c"},
    ],
)
def test_missing_in_jsonl_too(tmp_path, row):
    rows = [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}, row]
    p = w(tmp_path, "t.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"t.jsonl:3: field '(text|label)': .*--drop-missing"):
        tc.read_examples(str(p), "text", "label")


def test_none_stays_an_ordinary_label_while_nan_is_missing(tmp_path):
    p = w(tmp_path, "t.csv", "text,label\na,none\nb,None\nc,pos\nd,NaN\n")
    with pytest.raises(DataError, match=r"t.csv:5: field 'label': 'NaN' is a missing value"):
        tc.read_examples(str(p), "text", "label")
    with reading_policy(ReadPolicy(drop_missing=True)):
        ex = tc.read_examples(str(p), "text", "label")
    assert ex.labels == ["none", "None", "pos"]
    assert tc.label_names(ex.labels) == ["None", "none", "pos"]


def test_drop_missing_drops_and_counts(tmp_path, capsys):
    p = w(tmp_path, "t.csv", "text,label\na,pos\nb,NaN\nc,neg\nNA,pos\nd,\ne,null\nf,none\n")
    with reading_policy(ReadPolicy(drop_missing=True)):
        ex = tc.read_examples(str(p), "text", "label")
    assert ex.texts == ["a", "c", "f"] and ex.lines == [2, 4, 8]
    assert capsys.readouterr().err == (
        f"tunelab: {p}: dropped 4 of 7 rows with a missing value (--drop-missing); "
        "lines 3, 5, 6, 7\n"
    )
    with reading_policy(ReadPolicy(drop_missing=True)), pytest.raises(DataError) as e:
        tc.read_examples(str(w(tmp_path, "all.csv", "text,label\na,NaN\n")), "text", "label")
    assert str(e.value).endswith("no rows left: all 1 have a missing value (--drop-missing)")


def test_missing_per_task(tmp_path):
    """Regression targets, multi-label lists, tags and QA answers follow the same rule; an empty
    multi-label value stays "none of the labels"."""
    cases = [
        (regression, "r.jsonl", '{"text": "a", "y": 1}\n{"text": "b", "y": NaN}\n', "y", 2),
        (multi_label, "m.csv", "text,y\na,\nb,x;NaN\n", "y", 3),
        (tok, "t.conll", "a O\nb B-PER\n\nc O\nd null\n", "tags", 5),
        (qa, "q.jsonl", '{"context": "c", "question": "q", "y": null}\n', "y", 1),
    ]
    for module, name, content, field, line in cases:
        p = w(tmp_path, name, content)
        text_column = "tokens" if module is tok else "question" if module is qa else "text"
        with pytest.raises(DataError, match=rf"{re.escape(name)}:{line}: field '{field}': "):
            module.read_examples(str(p), text_column, field)
    with reading_policy(ReadPolicy(drop_missing=True)):
        assert multi_label.read_examples(str(tmp_path / "m.csv"), "text", "y").labels == [[]]
        assert tok.read_examples(str(tmp_path / "t.conll"), "tokens", "tags").lines == [1]


def test_the_config_keys_give_the_runs_policy():
    cfg = C.build({"drop_missing": "true", "max_field_chars": "5"})
    assert C.read_policy(cfg) == ReadPolicy(max_field_chars=5, drop_missing=True)
    C.validate(cfg)  # checking settings changes nothing global
    assert current_policy() == ReadPolicy()


def test_train_cli_refuses_missing_and_long_values_with_exit_2(tmp_path, capsys):
    train = w(tmp_path, "train.csv", "text,label\na,pos\nb,NaN\n")
    base = ["train", "--train", str(train), "--validation", str(train)]
    assert main([*base, "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"tunelab: error: {train}:3: field 'label': 'NaN' is a missing value; fill it in, or "
        "pass --drop-missing (config key drop_missing) to drop rows with missing values\n"
    )
    assert main([*base, "--output-dir", str(tmp_path / "o"), "--max-field-chars", "1"]) == 2
    assert "raise it with --max-field-chars" in capsys.readouterr().err
    assert current_policy() == ReadPolicy()  # the run's policy does not outlive it


def test_evaluate_and_predict_take_the_flags(trained_runs, tmp_path, capsys):
    data = w(tmp_path, "e.csv", "text,label\ngreat film,positive\nbad,NaN\nawful,negative\n")
    run = str(trained_runs["full"])
    assert main(["evaluate", "--model-dir", run, "--data", str(data)]) == 2
    assert "e.csv:3: field 'label': 'NaN' is a missing value" in capsys.readouterr().err
    assert main(["evaluate", "--model-dir", run, "--data", str(data), "--drop-missing"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["n"] == 2 and "dropped 1 of 3 rows" in err
    texts = w(tmp_path, "p.csv", "text\ngreat film\nnull\n")
    assert main(["predict", "--model-dir", run, "--input", str(texts), "--drop-missing"]) == 0
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 1 and "line 3" in err
    assert (
        main(["predict", "--model-dir", run, "--input", str(texts), "--max-field-chars", "3"]) == 2
    )
    assert "p.csv:2: field 'text': 10 characters" in capsys.readouterr().err
