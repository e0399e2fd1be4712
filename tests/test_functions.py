"""Task functions on tiny registered models: types and values, the registry, thread safety,
the generated tool schemas, and the HTTP function endpoints."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import tunelab
from tunelab.cli import main
from tunelab.errors import TunelabError

SAMPLE = ["good great film", "awful bad plot", "fine"]


def test_every_function_returns_its_type(registry, runs):
    from tunelab import functions as F

    want = tunelab.load(runs["classify"]).predict(SAMPLE)
    got = F.analyze_sentiment(SAMPLE)
    assert [type(x) for x in got] == [F.Sentiment] * 3
    assert [(x.label, round(x.score, 6)) for x in got] == [
        (w["label"], round(w["score"], 6)) for w in want
    ]
    one = F.analyze_sentiment("good great film")
    assert isinstance(one, F.Sentiment) and one.label == got[0].label
    assert one.score == pytest.approx(got[0].score, abs=1e-5)  # padded with others or not
    assert F.classify("fine", model="tickets") == F.classify("fine")
    assert isinstance(F.classify(["fine"])[0], F.Label)
    s = F.score(SAMPLE)
    assert len(s) == 3 and all(isinstance(x, float) for x in s)
    assert isinstance(F.score("fine"), float)
    text = "the great excellent movie was awful"
    ents = F.extract_entities(text)
    assert isinstance(ents, list) and all(isinstance(e, F.Entity) for e in ents)
    for e in ents:
        assert text[e.start : e.end] == e.text and 0 < e.score <= 1
    assert len(F.extract_entities([text, "fine"])) == 2
    context = "the plot was great but the sound was awful"
    a = F.answer("good", context)
    assert isinstance(a, F.Answer) and context[a.start : a.end] == a.text
    g = F.generate("good great film", max_new_tokens=3)
    assert isinstance(g, str) and len(g.split()) <= 3
    assert len(F.generate(["good", "bad"], max_new_tokens=2)) == 2
    m = tunelab.load(runs["gen"])
    assert m.spec["max_new_tokens"] == 4  # the per-call budget did not leak into the run


def test_unregistered_function_says_how_to_register(tmp_path, monkeypatch):
    from tunelab import functions as F

    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "empty.yaml"))
    with pytest.raises(
        TunelabError,
        match=r"no model registered for 'extract_entities'.*"
        r"tunelab register extract_entities runs/",
    ):
        F.extract_entities("x")


def test_register_checks_the_task(runs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "m.yaml"))
    assert main(["register", "score", str(runs["classify"])]) == 2
    assert "needs a regression model" in capsys.readouterr().err
    assert not (tmp_path / "m.yaml").exists()


def test_models_load_once_and_threads_share_them(registry, monkeypatch):
    from tunelab import functions as F
    from tunelab.functions import registry as R

    R._cache.clear()
    calls = []
    real = tunelab.load
    monkeypatch.setattr(tunelab, "load", lambda p, **k: calls.append(p) or real(p, **k))
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda i: F.analyze_sentiment(SAMPLE[i % 3]), range(32)))
    assert len(calls) == 1 and len(out) == 32
    assert out[0] == out[3] == out[6]


def test_tool_schemas_are_json_schema_generated_from_the_signatures(capsys):
    import inspect

    import jsonschema_rs

    from tunelab.functions import FUNCTIONS
    from tunelab.functions.schema import tools

    assert main(["functions", "--schema"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == tools()
    assert [t["function"]["name"] for t in printed] == list(FUNCTIONS)
    for spec in printed:
        fn = FUNCTIONS[spec["function"]["name"]]
        params = spec["function"]["parameters"]
        jsonschema_rs.meta.validate(params)  # a valid JSON Schema document
        sig = inspect.signature(fn).parameters
        assert list(params["properties"]) == list(sig)
        assert params["required"] == [
            k for k, p in sig.items() if p.default is inspect.Parameter.empty
        ]
        assert spec["function"]["description"] == inspect.getdoc(fn).split("\n\n")[0].replace(
            "\n", " "
        )
    by = {t["function"]["name"]: t["function"]["parameters"] for t in printed}
    ok = jsonschema_rs.validator_for(by["classify"])
    assert ok.is_valid({"text": ["a", "b"], "model": "tickets"})
    assert not ok.is_valid({"text": 3}) and not ok.is_valid({"model": "x"})
    assert by["generate"]["properties"]["max_new_tokens"] == {
        "type": "integer",
        "description": "most tokens to generate.",
        "default": 32,
    }


def test_function_endpoints_over_http(registry, keys_file, tmp_path):
    from serving_helpers import Server

    file, key = keys_file
    s = Server(["--functions", "--api-keys-file", str(file)], tmp_path / "log")
    try:
        status, body, _ = s.request(
            "POST", "/v1/functions/analyze_sentiment", {"text": "good great film"}, key=key
        )
        from tunelab import functions as F

        want = F.analyze_sentiment("good great film")
        assert status == 200 and body["result"]["label"] == want.label
        status, body, _ = s.request(
            "POST", "/v1/functions/answer", {"question": "good", "context": "a great plot"}, key=key
        )
        assert status == 200 and set(body["result"]) == {"text", "start", "end", "score"}
        assert s.request("POST", "/v1/functions/analyze_sentiment", {"text": "x"})[0] == 401
        assert s.request("POST", "/v1/functions/nope", {"text": "x"}, key=key)[0] == 404
        status, body, _ = s.request("POST", "/v1/functions/classify", {"txt": "x"}, key=key)
        assert status == 422 and '"txt"' in json.dumps(body["detail"])
        for bad in ({"text": 5}, {"text": []}, {"text": [" "]}, {"text": "x", "model": ["a"]}):
            assert s.request("POST", "/v1/functions/classify", bad, key=key)[0] == 422, bad
        for bad in (
            {"prompt": "x", "max_new_tokens": [1, 2]},
            {"prompt": "x", "max_new_tokens": True},
        ):
            assert s.request("POST", "/v1/functions/generate", bad, key=key)[0] == 422, bad
        assert s.request("POST", "/v1/functions/classify", {"text": "x" * 20000}, key=key)[0] == 422
    finally:
        s.stop()


@pytest.fixture()
def keys_file(tmp_path):
    from tunelab.web.keys import add_key

    f = tmp_path / "keys.txt"
    return f, add_key(f, "app")
