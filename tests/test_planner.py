"""Compound requests: texts taken out of a request, plans checked against the function catalog,
run with a trace over tiny models, the rule planner, the planner's training requests, the
grammar-constrained decoder (a tiny planner), `tunelab route` and POST /v1/plan."""

from __future__ import annotations

import json

import pytest

from tunelab.planning.grammar import Grammar
from tunelab.planning.plan_data import delinearise, linearise, make_examples
from tunelab.planning.program import PlanError, execute, parse
from tunelab.planning.requests import split_request
from tunelab.planning.rules import rule_plan

FUNCTIONS = ["analyze_sentiment", "classify", "score", "extract_entities", "answer", "generate",
             "answer_faq"]  # fmt: skip
LABELS = {
    "analyze_sentiment": ["negative", "positive"],
    "classify": ["account", "billing", "refund", "returns", "shipping", "spam", "technical"],
}
PLAN = [
    {"call": "analyze_sentiment", "over": "input"},
    {"filter": 1, "where": ["label", "==", "negative"]},
    {"call": "extract_entities", "over": 2},
]


@pytest.mark.parametrize(
    ("request_", "instruction", "items"),
    [
        ("Which are negative?\n1. the screen cracked\n2) lovely staff", "Which are negative?",
         ["the screen cracked", "lovely staff"]),
        ("rate these: slow delivery; great price; ok", "rate these:",
         ["slow delivery", "great price", "ok"]),
        ('tag each "broken zip on arrival" and "fast refund, thanks"', "tag each  and",
         ["broken zip on arrival", "fast refund, thanks"]),
        ("the hinge snapped\nbest purchase this year\nwhich ones are unhappy?",
         "which ones are unhappy?", ["the hinge snapped", "best purchase this year"]),
        ("找出差评：\n（1）物流太慢了\n（2）质量很好", "找出差评：", ["物流太慢了", "质量很好"]),
        ("给这些打分：1) 很满意 2) 一般般 3) 太差了", "给这些打分：",
         ["很满意", "一般般", "太差了"]),
        ("看看「电池不耐用」和「客服很耐心」哪条是负面的", "看看 和 哪条是负面的",
         ["电池不耐用", "客服很耐心"]),
        # the first line points at the texts, so the questions below it are texts
        ("Can the FAQ answer these?\nDo you ship to Cork?\nIs the X2 waterproof?",
         "Can the FAQ answer these?", ["Do you ship to Cork?", "Is the X2 waterproof?"]),
        ("差评挑出来：\n1）太慢了\n2）很好", "差评挑出来：", ["太慢了", "很好"]),
        ("Which are about billing?\n(a) charged twice\n(b) parcel lost", "Which are about billing?",
         ["charged twice", "parcel lost"]),
        ("这些能答吗：（1）几点关门？（2）能退吗？", "这些能答吗：", ["几点关门？", "能退吗？"]),
        ("翻译一下：1. 味道正宗 2. 上菜太慢", "翻译一下：", ["味道正宗", "上菜太慢"]),
        ("reply to this, please: 'I've waited a week.'", "reply to this, please:",
         ["I've waited a week."]),
        # a quoted question after an asking word is what to ask (Chinese: no question mark)
        ("每条问一下“买的是哪款”：耳机坏了；手表不走了", "每条问一下“买的是哪款”：",
         ["耳机坏了", "手表不走了"]),
    ],
)  # fmt: skip
def test_the_texts_are_taken_out_of_the_request(request_, instruction, items):
    got_instruction, got_items = split_request(request_)
    assert got_items == items
    assert got_instruction.split() == instruction.split()


def test_a_plan_is_checked_against_the_catalog_before_anything_runs():
    steps = parse(PLAN)
    assert [s.call or "filter" for s in steps] == [
        "analyze_sentiment",
        "filter",
        "extract_entities",
    ]
    bad = {
        "'summarise' is not a registered function": [{"call": "summarise", "over": "input"}],
        "at most 6": [{"call": "score", "over": "input"}] * 7,
        "earlier step": [{"call": "score", "over": 2}],
        "has no field 'label'": [{"call": "score", "over": "input"},
                                 {"filter": 1, "where": ["label", "==", "x"]}],
        "needs question": [{"call": "answer", "over": "input"}],
        "compares with a number": [{"call": "score", "over": "input"},
                                   {"filter": 1, "where": ["value", "<", "three"]}],
        "tests the results of an earlier call": [{"call": "score", "over": "input"},
                                                 {"filter": 1, "where": ["value", "<", 1]},
                                                 {"filter": 2, "where": ["value", "<", 0]}],
        "non-empty list": [],
    }  # fmt: skip
    for message, plan in bad.items():
        with pytest.raises(PlanError, match=message) as e:
            parse(plan)
        assert "\n" not in str(e.value)


def test_a_plan_runs_over_tiny_models_with_a_trace(registry):
    from tunelab.functions import analyze_sentiment

    texts = ["good great fine phone", "bad awful broken phone", "nice good day", "bad poor"]
    labels = [r.label for r in analyze_sentiment(texts)]
    target = labels[1]
    plan = [PLAN[0], {"filter": 1, "where": ["label", "==", target]}, PLAN[2]]
    run = execute(parse(plan), texts)
    kept = [t for t, lab in zip(texts, labels, strict=True) if lab == target]
    assert run.items[2] == kept and run.items[3] == kept
    assert [t["step"] for t in run.trace] == [1, 2, 3]
    assert run.trace[0]["inputs"] == 4 and len(run.trace[0]["outputs"]) == 4
    assert all(t["seconds"] >= 0 for t in run.trace)
    assert all("result" in o and isinstance(o["result"], list) for o in run.trace[2]["outputs"])
    with pytest.raises(PlanError, match="the limit is 2"):
        execute(parse(plan), texts, max_texts=2)


def test_the_rule_planner_reads_functions_and_filters():
    assert rule_plan("find the negative ones and list the companies they mention") == PLAN
    assert rule_plan("score these and draft a reply to those below 2") == [
        {"call": "score", "over": "input"},
        {"filter": 1, "where": ["value", "<", 2]},
        {"call": "generate", "over": 2},
    ]
    assert rule_plan("找出差评，然后提取其中提到的公司") == PLAN
    assert rule_plan("book a flight to Rome") is None


def test_training_requests_round_trip_and_always_parse():
    examples = make_examples(400, 3)
    assert len({e["request"] for e in examples}) == 400
    assert {e["lang"] for e in examples} == {"en", "zh"}
    assert {"refuse", "single", "filter_then", "two_filters"} <= {e["shape"] for e in examples}
    for e in examples:
        assert delinearise(e["response"]) == e["plan"]
        assert linearise(e["plan"]) == e["response"]
        if e["plan"]:
            parse(e["plan"])
            grammar = Grammar(FUNCTIONS, e["prompt"], LABELS)
            line = e["response"]
            assert grammar.state(line) == "complete", line
            assert grammar.state(line[: len(line) // 2]) in ("prefix", "complete")
    g = Grammar(FUNCTIONS, "ask each: who paid, and when? 客户要求几点送达？五星的", {})
    assert g.state('answer input question="who paid"') == "complete"  # a clause
    assert g.state('answer input question="who pa"') == "invalid"  # not where a clause ends
    assert g.state('answer input question="who pa') == "prefix"
    assert g.state('answer input question="要求几点送达？"') == "complete"
    assert g.state('answer input question="who stole it?"') == "invalid"  # not in the request
    assert "5" in g.numbers  # 五星
    g = Grammar(FUNCTIONS, "rate these below 3", {})
    assert g.state("score input ; filter 1 value < 3") == "complete"
    assert g.state("score input ; filter 1 value < 7") == "invalid"  # 7 is not in the request
    assert g.state("score input ; filter 2 value < 3") == "invalid"  # no step 2 yet
    assert g.state("score input ;") == "prefix" and g.state("none ; score input") == "invalid"


def test_the_written_training_requests_are_decodable_and_apart_from_the_test_set():
    from conftest import REPO
    from tunelab.planning.written import mix, written_rows

    rows = written_rows(FUNCTIONS)
    assert len(rows) == 634 and {r["lang"] for r in rows} == {"en", "zh"}
    for r in rows:
        assert r["prompt"].strip() and delinearise(r["response"]) == r["plan"]
        if r["plan"]:
            parse(r["plan"])
            state = Grammar(FUNCTIONS, r["prompt"], LABELS).state(r["response"])
            assert state == "complete", (r["prompt"], r["response"])  # the decoder can write it
    held_out = [
        json.loads(x)
        for name in ("test", "dev")
        for x in (REPO / f"data/plans/{name}.jsonl").read_text("utf-8").splitlines()
    ]
    assert not {r["request"] for r in rows} & {r["request"] for r in held_out}
    assert not {r["prompt"] for r in rows} & {split_request(r["request"])[0] for r in held_out}
    fewer = written_rows(["analyze_sentiment", "generate"])  # plans over unregistered calls go
    kept = {s.get("call") for r in fewer for s in r["plan"] or []}
    assert 0 < len(fewer) < len(rows) and kept <= {None, "analyze_sentiment", "generate"}
    composed = make_examples(30, 1)
    train, validation = mix(composed, rows, 2, 10, seed=0)
    assert len(validation) == 20 and len(train) == 20 + 2 * (len(rows) - 10)
    assert not {r["request"] for r in validation} & {r["request"] for r in train}


# --- a tiny planner: a 2-layer Llama whose word-level vocabulary holds the plan words --------
PLAN_WORDS = [
    *FUNCTIONS, "input", ";", "filter", *"0123456", "label", "score", "value", "count", "types",
    "handoff", "==", "!=", "<", "<=", ">", ">=", "has", "negative", "positive", "ORG", "PER",
    "LOC", "MISC", "true", "false", "none", "billing", "shipping", "refund", "find", "the",
    "ones", "and", "list", "companies", "they", "mention", "rate", "these", "below",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_planner_model(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    from conftest import tiny_decoder_config

    d = tmp_path_factory.mktemp("tiny-planner-base")
    words = list(dict.fromkeys(["<pad>", "<unk>", "<s>", "</s>", *PLAN_WORDS]))
    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=t, bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", unk_token="<unk>")  # fmt: skip
    tok.save_pretrained(d)
    torch.manual_seed(0)
    cfg = tiny_decoder_config(len(tok), max_position_embeddings=128, bos_token_id=2,
                              eos_token_id=3, pad_token_id=0)  # fmt: skip
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny_planner(tiny_planner_model, tmp_path_factory):
    """`tunelab planner-train` end to end on the tiny model (not registered)."""
    from tunelab.cli import main

    out = tmp_path_factory.mktemp("planner") / "run"
    code = main(["planner-train", "--model", str(tiny_planner_model), "--examples", "200",
                 "--written-copies", "1",
                 "--epochs", "1", "--max-length", "64", "--max-new-tokens", "24",
                 "--learning-rate", "3e-3", "--output-dir", str(out), "--no-register",
                 "--no-progress"])  # fmt: skip
    assert code == 0
    data = out.parent / "run.plan-data"
    rows = [json.loads(x) for x in (data / "train.jsonl").read_text("utf-8").splitlines()]
    shapes = {r["shape"] for r in rows}  # composed and hand-written requests, both kept
    assert "written_compound" in shapes and "filter_then" in shapes
    assert (data / "validation.jsonl").is_file()
    return out


@pytest.mark.parametrize(
    "instruction",
    ["find the negative ones and list the companies they mention", "rate these below 3",
     "找出差评", "none of this makes sense", ""],
)  # fmt: skip
def test_the_constrained_decoder_only_writes_valid_plans(tiny_planner, instruction):
    from tunelab.planning.planner import model_planner, plan_request

    planner = model_planner(str(tiny_planner))
    assert planner is not None
    line = planner.write(instruction)
    plan = delinearise(line)
    assert line == "none" or parse(plan)  # a plan the catalog accepts, or a refusal
    p = plan_request(f"{instruction}: good phone; bad phone", planner)
    assert p.source == "model" and (p.plan is None or parse(p.plan))
    assert p.items == ["good phone", "bad phone"]


def test_every_hand_written_plan_executes_over_its_texts(registry):
    """Execution: each dev-set plan runs over the texts its request lists, every call step
    gets a result per item, every filter keeps a subset of its source. Plans with answer_faq
    (no knowledge base here) or answer (the tiny QA run's 32 tokens leave no room for the
    longer questions) are left out."""
    from conftest import REPO

    rows = [json.loads(x) for x in (REPO / "data/plans/dev.jsonl").read_text("utf-8").splitlines()]
    ran = 0
    for r in rows:
        if not r["plan"] or any(s.get("call") in ("answer_faq", "answer") for s in r["plan"]):
            continue
        run = execute(parse(r["plan"]), r["input"])
        assert len(run.trace) == len(r["plan"])
        for n, s in enumerate(r["plan"], start=1):
            if "filter" in s:
                assert set(run.items[n]) <= set(run.items[s["filter"]])
            else:
                assert len(run.results[n]) == len(run.items[n])
        ran += 1
    assert ran >= 80


def test_route_plans_a_compound_request_and_runs_it(registry, capsys):
    from tunelab.cli import main

    request = "find the negative ones and list the companies they mention: good great; bad awful"
    assert main(["route", request, "--planner", "rules"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plan"] == PLAN and out["planner"] == "rules"
    assert out["input"] == ["good great", "bad awful"]
    assert [t["step"] for t in out["trace"]] == [1, 2, 3] and out["summary"]
    assert main(["route", request, "--planner", "rules", "--dry-run"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["plan"] == PLAN and "trace" not in dry and len(dry["steps"]) == 3
    assert main(["route", "book a flight: Rome; Paris", "--planner", "rules"]) == 3
    assert "refused" in json.loads(capsys.readouterr().out)
    # a single-function request still takes the router's path (none is registered here)
    assert main(["route", "is this review positive? good phone", "--planner", "rules"]) == 2
    assert "no router registered" in capsys.readouterr().err


def test_plan_endpoint_over_http(registry, tmp_path):
    from serving_helpers import Server
    from tunelab.web.keys import add_key

    key = add_key(tmp_path / "keys.txt", "app")
    s = Server(["--functions", "--api-keys-file", str(tmp_path / "keys.txt"), "--max-texts", "3"],
               tmp_path / "log")  # fmt: skip
    try:
        body = {"request": "score these and draft a reply to those below 9: good; bad",
                "planner": "rules"}  # fmt: skip
        status, out, _ = s.request("POST", "/v1/plan", body, key=key)
        assert status == 200 and [t["step"] for t in out["trace"]] == [1, 2, 3]
        assert out["plan"][1] == {"filter": 1, "where": ["value", "<", 9]}
        many = {"request": "rate these: a1; b2; c3; d4", "planner": "rules"}
        assert s.request("POST", "/v1/plan", many, key=key)[0] == 413
        assert s.request("POST", "/v1/plan", {"request": ""}, key=key)[0] == 422
        assert s.request("POST", "/v1/plan", {"req": "x"}, key=key)[0] == 422
        assert s.request("POST", "/v1/plan", {"request": "x", "execute": 0}, key=key)[0] == 422
        status, out, _ = s.request("POST", "/v1/plan", {"request": "book a flight: a; b",
                                                        "planner": "rules"}, key=key)  # fmt: skip
        assert status == 200 and out["plan"] is None and out["refused"]
        assert s.request("POST", "/v1/functions/score", {"text": "good"}, key=key)[0] == 200
    finally:
        s.stop()
