"""The studio's API and security on a real `tunelab studio` process: keys on every page and
call, login sessions with CSRF protection, uploads kept inside the runs folder and size-limited,
a Train form generated from the registries, settings refused with the CLI's message."""

from __future__ import annotations

import http.client
import http.cookiejar
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from serving_helpers import Server
from tunelab.studio import data, forms
from tunelab.web import i18n

TUNELAB = str(Path(sys.executable).parent / "tunelab")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    from tunelab.web.keys import add_key

    d = tmp_path_factory.mktemp("studio-keys")
    key = add_key(d / "keys.txt", "alice")
    s = Server(
        ["--runs-dir", str(d / "runs"), "--api-keys-file", str(d / "keys.txt")],
        d / "studio.log",
        wait_ready=False,
        command=[TUNELAB, "studio"],
    )
    s.wait("/healthz")
    yield s, key, d / "runs"
    s.stop()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _browser():
    jar = http.cookiejar.CookieJar()
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect()), jar


def _open(opener, req):
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def test_with_keys_every_page_and_call_needs_one_and_changes_need_the_csrf_token(keyed):
    server, key, _ = keyed
    assert server.request("GET", "/v1/studio/runs")[0] == 401
    assert server.request("GET", "/v1/studio/runs", key=key)[0] == 200  # scripts: bearer
    opener, jar = _browser()
    status, _, headers = _open(opener, urllib.request.Request(server.url + "/studio/runs"))
    assert status == 303 and headers["location"].startswith("/login?next=/studio/runs")

    login = urllib.parse.urlencode({"key": "wrong", "next": "/studio/runs"}).encode()
    assert _open(opener, urllib.request.Request(server.url + "/login", data=login))[0] == 401
    login = urllib.parse.urlencode({"key": key, "next": "https://evil.example/"}).encode()
    status, _, headers = _open(opener, urllib.request.Request(server.url + "/login", data=login))
    assert status == 303 and headers["location"] == "/studio/data"  # no open redirect
    cookie = next(c for c in jar if c.name == "tunelab_session")
    assert cookie.has_nonstandard_attr("HttpOnly")

    status, html, _ = _open(opener, urllib.request.Request(server.url + "/studio/runs"))
    assert status == 200
    csrf = html.split('name="csrf" content="')[1].split('"')[0]
    assert len(csrf) > 20
    assert _open(opener, urllib.request.Request(server.url + "/v1/studio/jobs"))[0] == 200
    body = b'{"name": "x"}'
    post = urllib.request.Request(
        server.url + "/v1/studio/command", data=body, headers={"Content-Type": "application/json"}
    )
    status, text, _ = _open(opener, post)
    assert status == 403 and "CSRF" in text  # a cookie alone cannot change anything
    post.add_header("X-CSRF-Token", csrf)
    status, text, _ = _open(opener, post)
    assert status == 422 and "train" in text  # past the guard: the form's own error


def test_uploads_stay_in_the_runs_folder_and_are_size_limited(keyed, tmp_path):
    server, key, runs = keyed
    status, body, _ = server.request(
        "POST",
        "/v1/studio/uploads?name=" + urllib.parse.quote("../../etc/evil.csv"),
        raw=b"text,label\nok,positive\n",
        key=key,
        content_type="application/octet-stream",
    )
    assert status == 200, body
    stored = Path(body["path"])
    assert stored.parent == (runs / ".studio" / "uploads").resolve() and stored.name == "evil.csv"
    status, body, _ = server.request(
        "POST",
        "/v1/studio/uploads?name=x.exe",
        raw=b"MZ",
        key=key,
        content_type="application/octet-stream",
    )
    assert status == 422 and "unsupported file type" in str(body)
    # over the limit: refused from the declared length, before the body is read
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/v1/studio/uploads?name=big.csv")
    conn.putheader("Authorization", f"Bearer {key}")
    conn.putheader("Content-Length", str(data.UPLOAD_LIMIT + 1))
    conn.endheaders()
    answer = conn.getresponse()
    assert answer.status == 413 and "over the limit" in answer.read().decode()
    conn.close()
    status, body, _ = server.request(
        "GET", "/v1/studio/preview?path=" + urllib.parse.quote("/etc/passwd"), key=key
    )
    assert status == 422 and "not a bundled set or an uploaded file" in str(body)
    assert server.request("GET", "/healthz")[0] == 200  # and it keeps serving


def test_the_train_form_comes_from_the_registries_and_refuses_what_the_cli_refuses(tmp_path):
    from tunelab.errors import ConfigError
    from tunelab.methods import METHODS

    schema = forms.form_schema()
    assert {m["name"] for m in schema["methods"]} == set(METHODS)
    lora = next(m for m in schema["methods"] if m["name"] == "lora")
    r = next(o for o in lora["options"] if o["key"] == "lora_r")
    assert r["default"] == 16 and r["range"] == "must be >= 1"
    precision = next(f for f in schema["sections"]["more"] if f["key"] == "precision")
    assert precision["choices"] == ["auto", "fp32", "bf16", "fp16"]

    good = {
        "name": "r1",
        "train": "t.csv",
        "validation": "v.csv",
        "method": "lora",
        "lora_r": "8",
        "epochs": "2",
        "gradient_checkpointing": "true",
    }
    cmd = forms.build_command(good, tmp_path)
    assert cmd["argv"][:3] == ["train", "--train", "t.csv"]
    assert "--gradient-checkpointing" in cmd["argv"] and "--lora-r" in cmd["argv"]
    assert cmd["output_dir"] == str(tmp_path / "r1")
    assert "lora_r: 8" in cmd["yaml"]
    for bad, message in [
        ({**good, "lora_r": "0"}, "key 'lora_r' = 0 must be >= 1"),
        ({**good, "epochs": "-1"}, "key 'epochs' = -1.0 must be > 0"),
        ({**good, "learning_rat": "1"}, "unknown key 'learning_rat'"),
        ({**good, "name": "../x"}, "key 'name'"),
        ({**good, "output_dir": "/tmp/x"}, "set by the studio"),
        ({**good, "precision": "fp64"}, "must be auto, fp32, bf16 or fp16"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
            forms.build_command(bad, tmp_path)


def test_both_languages_have_every_word():
    assert set(i18n.STRINGS["en"]) == set(i18n.STRINGS["zh"])
    assert i18n.pick(None, None, "zh-CN,zh;q=0.9") == "zh"
    assert i18n.pick("en", "zh", "zh-CN") == "en"
    assert i18n.pick(None, "bogus", None) == "en"


def test_try_it_predicts_with_every_task_as_the_page_renders_it(runs, tmp_path):
    """Try it on a real studio, one finished run per task (linked into its runs folder): the
    shapes the page draws (probabilities, a number, entities and answers with offsets into the
    text, a generation)."""
    folder = tmp_path / "runs"
    folder.mkdir()
    for name, run in runs.items():
        (folder / name).symlink_to(run, target_is_directory=True)
    s = Server(
        ["--runs-dir", str(folder)],
        tmp_path / "studio.log",
        wait_ready=False,
        command=[TUNELAB, "studio"],
    )
    try:
        s.wait("/healthz")
        listed = {r["run"]: r["task"] for r in s.request("GET", "/v1/studio/runs")[1]}
        assert set(listed) == set(runs)

        def predict(run, inputs):
            status, body, _ = s.request(
                "POST", "/v1/studio/predict", {"run": run, "inputs": inputs}
            )
            assert status == 200, body
            assert body["task"] == listed[run]
            return body["predictions"]

        (c,) = predict("classify", ["a great film"])
        assert c["label"] in c["probabilities"]
        (v,) = predict("score", ["a great film"])
        assert isinstance(v["value"], float)
        text = "alice met bob in paris"
        (n,) = predict("ner", [text])
        assert all(text[e["start"] : e["end"]] == e["text"] for e in n["entities"])
        context = "the cat sat on the mat near the door"
        (q,) = predict("qa", [{"question": "where did the cat sit?", "context": context}])
        assert context[q["start"] : q["end"]] == q["answer"]
        (g,) = predict("gen", ["hello"])
        assert isinstance(g["generated"], str)
        status, body, _ = s.request("POST", "/v1/studio/predict", {"run": "nope", "inputs": ["x"]})
        assert status == 404
    finally:
        s.stop()


def test_the_data_preview_counts_what_each_task_reads(tmp_path):
    ner = tmp_path / "ner.jsonl"
    ner.write_text(
        '{"tokens": ["Alice", "met", "Bob"], "tags": ["B-PER", "O", "B-PER"]}\n'
        '{"tokens": ["Paris"], "tags": ["B-LOC"]}\n',
        encoding="utf-8",
    )
    p = data.preview(str(ner), "token-classification")
    assert p["labels"] == {"B-PER": 2, "O": 1, "B-LOC": 1}  # tags, not tag sequences
    assert p["rows"][0] == {"line": 1, "text": "Alice met Bob", "label": "B-PER O B-PER"}
    rated = tmp_path / "ratings.tsv"
    rated.write_text("text\trating\ngood\t4.5\nbad\t1\nok\t3\n", encoding="utf-8")
    p = data.preview(str(rated), "regression", label_column="rating")
    assert p["labels"] == {} and sum(p["values"]["counts"]) == 3  # a histogram of the target
    assert p["values"]["edges"][0] == 1.0 and p["values"]["edges"][-1] == 4.5
    p = data.preview(str(rated), "regression")  # the default label column is missing
    assert "missing column 'label'" in p["error"] and p["error"].startswith(str(rated))
