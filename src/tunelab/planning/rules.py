"""The rule-based planner: keywords to calls and filters, in the order the request names them.

It is the fallback when no planner model is registered, and the baseline the fine-tuned
planner is measured against. It reads the instruction only (:mod:`tunelab.planning.requests`
takes the texts out): each function is found by its words (English and Chinese), each filter by
its words (``negative``, ``below 3``, ``that the bot could not answer``, ``mention a company``);
calls run over the input unless they come after a filter, which tests the call that gives its
field. A request with no function words is refused (None).
"""

from __future__ import annotations

import re

WORDS: dict[str, tuple[str, ...]] = {
    "analyze_sentiment": (
        "sentiment", "positive", "negative", "tone", "mood", "feel", "happy", "unhappy",
        "angry", "upset", "complain", "情感", "情绪", "正面", "负面", "好评", "差评", "语气",
        "满意", "不满", "态度",
    ),
    "extract_entities": (
        "entit", "compan", "brand", "people", "person", "place", "cities", "city", "names",
        "mention", "organi", "who ", "where ", "实体", "公司", "品牌", "人名", "地名", "城市",
        "提到", "提及", "涉及", "哪些人", "地点", "机构",
    ),
    "classify": (
        "classif", "categor", "department", "team", "topic", "route", "sort into", "type of",
        "分类", "类别", "归类", "部门", "哪一类", "类型",
    ),
    "score": (
        "score", "rate ", "rating", "stars", "how good", "评分", "打分", "分数", "几分", "星",
    ),
    "generate": (
        "write", "draft", "reply", "respond", "compose", "summar", "slogan", "rewrite",
        "写", "回复", "起草", "生成", "总结", "摘要", "草拟", "拟",
    ),
    "answer_faq": (
        "faq", "knowledge base", "answer the customer", "answer these question",
        "answer each question", "help desk", "常见问题", "知识库", "解答", "客服回答",
    ),
}  # fmt: skip
# requests that take the router's path whatever other words they hold: music ("write a happy
# tune" names no sentiment call and no text to write)
ROUTER_ONLY = re.compile(
    r"(?i)\b(melod|tune|music|song|lullaby|jingle|ringtone|fanfare|waltz|chorale)|"
    r"旋律|音乐|曲子|乐曲|小曲|歌曲|摇篮曲|铃声|舞曲|作曲"
)
_QUESTION = re.compile(r"[\"“']?([A-Za-z\u4e00-\u9fff][^?？\"“”]{3,80}[?？])")
_NUMBER = r"(-?\d+(?:\.\d+)?)"
_LESS = r"below|under|less than|lower than|低于|小于|不到"
_MORE = r"above|over|more than|higher than|greater than|高于|大于|超过"
_MENTION = r"(?i)mention(?:s|ing)? (?:a |any )?"
FILTER_PATTERNS: list[tuple[str, tuple]] = [
    (
        r"(?i)\bnot (positive|happy)|\bunhappy|\bnegative|\bbad\b|\bcomplain|\bangry|"
        r"didn'?t like|负面|差评|不满|生气|抱怨|不好",
        ("label", "==", "negative"),
    ),
    (
        r"(?i)\bpositive|\bhappy\b|\bliked\b|\bgood ones|正面|好评|满意的",
        ("label", "==", "positive"),
    ),
    (rf"(?i)(?:{_LESS})\s*{_NUMBER}", ("value", "<", None)),
    (rf"(?i)(?:{_MORE})\s*{_NUMBER}", ("value", ">", None)),
    (rf"(?i){_NUMBER}\s*(?:or (?:lower|less|below)|分?及以下|分?以下)", ("value", "<=", None)),
    (rf"(?i){_NUMBER}\s*(?:or (?:higher|more|above)|分?及以上|分?以上)", ("value", ">=", None)),
    (
        r"(?i)could ?n[o']t (?:answer|handle)|can'?t (?:answer|handle)|handed? off|"
        r"hand-?off|escalat|回答不了|答不了|处理不了|转人工|无法回答",
        ("handoff", "==", True),
    ),
    (_MENTION + r"(?:compan|brand|organi)|提到.{0,4}(?:公司|品牌|机构)的", ("types", "has", "ORG")),
    (_MENTION + r"(?:person|people|someone)|提到.{0,4}人(?:名)?的", ("types", "has", "PER")),
    (_MENTION + r"(?:place|city|location)|提到.{0,4}(?:地方|城市|地点)的", ("types", "has", "LOC")),
]
FILTERS = [(re.compile(p), cond) for p, cond in FILTER_PATTERNS]
# which function gives a filter's field
FIELD_OF = {"label": ("analyze_sentiment", "classify"), "value": ("score",),
            "handoff": ("answer_faq",), "types": ("extract_entities",)}  # fmt: skip


def rule_plan(instruction: str, labels: dict[str, list[str]] | None = None) -> list[dict] | None:
    """A plan for ``instruction`` by keywords; None when no function is named.

    Args:
        labels: the classifier's labels with words that name them ({"shipping": ["shipping",
            "delivery", "物流"]}); a request naming one filters ``classify`` on it.
    """
    low = instruction.lower()
    found: list[tuple[int, str]] = []
    for name, words in WORDS.items():
        hits = [low.find(w) for w in words if w in low]
        if hits:
            found.append((min(hits), name))
    question = _QUESTION.search(instruction)
    if (
        question
        and "answer_faq" not in {n for _, n in found}
        and re.search(r"(?i)for each|each of|in each|every|每条|每个|分别", instruction)
    ):
        found.append((question.start(), "answer"))
    if not found:
        return None
    found.sort()
    order = [n for _, n in found]
    conds = _filters(instruction, labels or {}, order)
    if (
        "analyze_sentiment" in order
        and len(order) > 1
        and any(c[0] == "label" and c[2] in ("negative", "positive") for c, _ in conds)
        and order.index("analyze_sentiment") != 0
    ):
        order.remove("analyze_sentiment")
        order.insert(0, "analyze_sentiment")  # sentiment words pick texts: judge them first
    steps: list[dict] = []
    filtered_at: int | None = None
    pending = list(conds)
    for name in order:
        step: dict = {"call": name, "over": filtered_at or "input"}
        if name == "answer" and question:
            step["args"] = {"question": question.group(1).strip()}
        steps.append(step)
        for cond, pos in list(pending):
            if name in FIELD_OF[cond[0]] and (cond[0] != "label" or _label_for(name, cond[2])):
                steps.append({"filter": len(steps), "where": list(cond)})
                filtered_at = len(steps)
                pending.remove((cond, pos))
                break
    return steps


def _label_for(function: str, label: str) -> bool:
    sentiment = label in ("positive", "negative")
    return sentiment == (function == "analyze_sentiment")


def _filters(text: str, labels: dict[str, list[str]], order: list[str]) -> list[tuple[tuple, int]]:
    out: list[tuple[tuple, int]] = []
    for pattern, cond in FILTERS:
        m = pattern.search(text)
        if not m:
            continue
        if cond[2] is None:
            cond = (cond[0], cond[1], _num(m.group(1)))
        if any(c[0] == cond[0] for c, _ in out):
            continue
        out.append((cond, m.start()))
    if "classify" in order:
        low = text.lower()
        for label, words in labels.items():
            hits = [low.find(w.lower()) for w in words if w.lower() in low]
            if hits:
                out.append((("label", "==", label), min(hits)))
                break
    return sorted(out, key=lambda x: x[1])


def _num(s: str) -> int | float:
    x = float(s)
    return int(x) if x == int(x) else x
