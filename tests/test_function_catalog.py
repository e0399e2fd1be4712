"""The function catalog as an extension point: a function backed by a new kind of folder is
registered in one line and then shows up everywhere (FUNCTIONS, `tunelab functions`, the
schemas, the HTTP endpoint, the router's labels and training requests) with no other edit;
duplicates and bad declarations are refused. No model is trained here: the toy kind is a
folder holding a JSON file."""

from __future__ import annotations

import asyncio
import csv
import json
import types
from pathlib import Path

import pytest

import tunelab
from conftest import write_csv
from tunelab.cli import main
from tunelab.errors import TunelabError
from tunelab.functions import (
    FUNCTIONS,
    ROUTE_DATA,
    Label,
    Sentiment,
    TaskFunction,
    catalog,
    register_folder_kind,
    register_function,
)
from tunelab.functions.registry import model_for
from tunelab.functions.router import SPLITS, fill_arguments, route, route_dataset, route_labels
from tunelab.functions.schema import tools

BUILTIN = ["analyze_sentiment", "classify", "score", "extract_entities", "answer", "generate"]
SHIPPED = {"train": 470, "validation": 82, "test": 232}  # rows of route_data/
WRITTEN = 410  # route_data/written.csv: hand-written requests, training only
# a system on the engine registers its function the same way: the assistant's, with its examples
SYSTEMS = ["answer_faq", "compose_music"]
# assistant/route_examples.csv (100/20/30) and music/route_examples.csv (66/14/20)
SYSTEM_ROWS = {"train": 166, "validation": 34, "test": 50}


def _load_notes(folder: str) -> dict[str, str]:
    return json.loads((Path(folder) / "notes.json").read_text(encoding="utf-8"))


def _describe_notes(folder: str) -> str:
    if not (Path(folder) / "notes.json").is_file():
        raise TunelabError(f"{folder}: not a notes folder (no notes.json)")
    return "glossary"


def lookup(word: str) -> str:
    """What a word means, from the notes registered as lookup.

    Args:
        word: the word to look up.
    """
    return model_for("lookup").get(word, "")


@pytest.fixture(scope="module")
def notes(tmp_path_factory):
    """A 'notes' folder kind and a `lookup` function backed by it, one line each."""
    d = tmp_path_factory.mktemp("notes")
    (d / "kb").mkdir()
    (d / "kb" / "notes.json").write_text(json.dumps({"tram": "a street railway"}))
    examples = write_csv(
        d / "lookup.csv",
        [
            *(
                {"text": f"what does {w} mean", "lang": "en"}
                for w in ("tram", "ferry", "bus", "kiosk", "quay", "depot", "platform", "tunnel")
            ),
            *({"text": f"{w}是什么意思", "lang": "zh"} for w in "车船站港桥路门"),
        ],
        ("text", "lang"),
    )
    register_folder_kind("notes", load=_load_notes, describe=_describe_notes)
    register_function(
        TaskFunction(
            "lookup",
            lookup,
            folder_kind="notes",
            task="glossary",
            fill_arguments=lambda r: {"word": r.split()[2]},
            route_examples=examples,
        )
    )
    try:
        yield d
    finally:
        catalog.unregister_function("lookup")
        catalog.unregister_folder_kind("notes")


def test_a_registered_function_appears_in_the_names_the_cli_and_the_schemas(notes, capsys):
    assert list(FUNCTIONS) == [*BUILTIN, *SYSTEMS, "lookup"] and FUNCTIONS["lookup"] is lookup
    spec = tools()[-1]["function"]
    assert spec["name"] == "lookup" and spec["parameters"]["required"] == ["word"]
    assert spec["parameters"]["properties"]["word"] == {
        "type": "string",
        "description": "the word to look up.",
    }
    assert main(["functions", "--schema"]) == 0
    assert [t["function"]["name"] for t in json.loads(capsys.readouterr().out)] == list(FUNCTIONS)
    assert main(["functions"]) == 0
    out = capsys.readouterr().out
    assert "lookup" in out and "notes: glossary" in out and "What a word means" in out


def test_the_router_labels_and_requests_come_from_the_catalog(notes, tmp_path):
    assert route_labels() == [*BUILTIN, *SYSTEMS, "lookup", "none"]
    out = route_dataset(tmp_path / "requests")
    split = {s: list(csv.DictReader(open(out / f"{s}.csv", encoding="utf-8"))) for s in SPLITS}
    for s, rows in split.items():
        shipped = list(csv.DictReader(open(ROUTE_DATA / f"{s}.csv", encoding="utf-8")))
        assert len(shipped) == SHIPPED[s]
        if s == "train":
            shipped += list(csv.DictReader(open(ROUTE_DATA / "written.csv", encoding="utf-8")))
        assert rows[: len(shipped)] == shipped  # all, in order
        system = rows[len(shipped) : len(shipped) + SYSTEM_ROWS[s]]
        assert {r["label"] for r in system} == set(SYSTEMS)
        own = rows[len(shipped) + SYSTEM_ROWS[s] :]
        assert {r["label"] for r in own} == {"lookup"}
        assert {r["lang"] for r in own} == {"en", "zh"}, s  # each split gets both languages
    total = sum(SHIPPED.values()) + WRITTEN + sum(SYSTEM_ROWS.values()) + 15
    assert sum(len(rows) for rows in split.values()) == total
    assert fill_arguments("lookup", "what does tram mean") == {"word": "tram"}


def test_a_router_over_the_new_label_routes_to_it_and_calls_it(notes, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "models.yaml"))
    assert main(["register", "lookup", str(notes / "kb")]) == 0
    assert FUNCTIONS["lookup"]("tram") == "a street railway"
    assert model_for("lookup") is model_for("lookup")  # loaded once, then shared

    def fake_router(labels):  # what tunelab.load gives for a router folder, minus the model
        def predict(texts):
            return [{"probabilities": {x: float(x == labels[-2]) for x in labels}} for _ in texts]

        return types.SimpleNamespace(
            labels=labels, task_name="text-classification", predict=predict
        )

    monkeypatch.setattr(tunelab, "load", lambda folder, **k: fake_router(route_labels()))
    r = route("what does tram mean", folder="router")
    assert (r.function, r.arguments, r.result) == ("lookup", {"word": "tram"}, "a street railway")
    monkeypatch.setattr(tunelab, "load", lambda folder, **k: fake_router(["lookdown", "none"]))
    with pytest.raises(TunelabError, match="not a router.*lookdown"):
        route("what does tram mean", folder="router")


def test_a_folder_of_the_wrong_kind_or_task_is_refused_clearly(
    notes, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "models.yaml"))
    assert main(["register", "lookup", str(tmp_path)]) == 2
    assert "not a notes folder" in capsys.readouterr().err
    assert main(["register", "analyze_sentiment", str(notes / "kb")]) == 2
    assert "not a tunelab run folder" in capsys.readouterr().err
    assert not (tmp_path / "models.yaml").exists()
    with pytest.raises(
        TunelabError,
        match=r"no model registered for 'lookup'.*"
        r"tunelab register lookup FOLDER",
    ):
        lookup("tram")


def test_the_http_endpoint_serves_a_function_registered_after_import(notes, tmp_path, monkeypatch):
    from tunelab.serving.app import create_app
    from tunelab.serving.settings import ServeSettings

    monkeypatch.setenv("TUNELAB_MODELS", str(tmp_path / "models.yaml"))
    assert main(["register", "lookup", str(notes / "kb")]) == 0
    app = create_app(ServeSettings(functions=True))
    paths = app.openapi()["paths"]
    assert {f"/v1/functions/{n}" for n in FUNCTIONS} <= set(paths)
    body = paths["/v1/functions/lookup"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("LookupArguments")
    assert _post(app, "/v1/functions/lookup", {"word": "tram"}) == (
        200,
        {"function": "lookup", "result": "a street railway"},
    )
    assert _post(app, "/v1/functions/lookup", {"text": "tram"})[0] == 422


def test_duplicate_reserved_and_untyped_declarations_are_refused():
    def untyped(text):
        """No hints."""

    before = list(FUNCTIONS)
    with pytest.raises(ValueError, match="'classify' is already registered"):
        register_function(TaskFunction("classify", lookup))
    with pytest.raises(ValueError, match="folder kind 'run' is already registered"):
        register_folder_kind("run", load=_load_notes, describe=_describe_notes)
    for bad in ("none", "route", "has space", ""):
        with pytest.raises(ValueError, match="cannot name a task function"):
            register_function(TaskFunction(bad, lookup))
    with pytest.raises(ValueError, match="unknown folder kind 'vault'"):
        register_function(TaskFunction("vault", lookup, folder_kind="vault"))
    with pytest.raises(ValueError, match="type hints"):
        register_function(TaskFunction("untyped", untyped))
    with pytest.raises(ValueError, match="route_examples"):
        register_function(TaskFunction("lost", lookup, route_examples="no/such.csv"))
    assert list(FUNCTIONS) == before  # nothing half-registered


def test_default_arguments_and_one_result_class():
    assert TaskFunction("x", lookup).arguments("define: tram") == {"word": "tram"}
    assert Sentiment is Label


def _post(app, path: str, body: dict) -> tuple[int, dict]:
    """One JSON POST straight through the ASGI app (no server process, no HTTP client)."""
    sent: list[dict] = []
    inbox = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

    async def receive() -> dict:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
        "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(data)
