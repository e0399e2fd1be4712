"""A compound request split into its instruction and the texts it is about: pure rules.

    >>> split_request("Which are negative?\\n1. Delta lost my bag\\n2. Great")
    ('Which are negative?', ['Delta lost my bag', 'Great'])

The texts are what the request lists: lines (numbered, bulleted or plain, before or after the
instruction), inline numbering (``1) ... 2) ...``), quotes (``"..."``, ``“...”``, ``「...」``,
``'...'``), or a ``;``-separated list after a colon; else the one text after a colon, else the
text the request is about (:func:`tunelab.functions.arguments.payload`). The instruction is the
rest, which is all a planner needs to read.
"""

from __future__ import annotations

import re

_MARK = r"(?:\d{1,2}[.)）、．:]|[(（](?:\d{1,2}|[a-h])[)）]|[-*•·]|[①-⑳])"
_LINE_ITEM = re.compile(rf"^\s*{_MARK}\s*(.+?)\s*$")
_INLINE = re.compile(
    r"(?:^|(?<=\s)|(?<=[:：，,；;。？?！!]))"
    r"(?:\d{1,2}[)）]|[(（]\d{1,2}[)）]|\d{1,2}、|\d{1,2}\.(?=\s))\s*"
)
_QUOTED = re.compile(r"[\"“「『]([^\"“”「」『』]{2,}?)[\"”」』]")
_SINGLE = re.compile(r"(?:(?<=^)|(?<=[\s:：,(]))'([^']{4,}?)'(?=[\s,.;:!?)]|$)")
_COLON = re.compile(r"[:：]")
_SEMI = re.compile(r"\s*[;；]\s*")


def split_request(request: str) -> tuple[str, list[str]]:
    """(instruction, texts) of a request; texts is never empty for a non-empty request."""
    text = request.strip()
    if not text:
        return "", []
    for rule in (_lines, _inline, _quoted, _after_colon):
        got = rule(text)
        if got is not None and got[1]:
            return got[0].strip(), [t.strip() for t in got[1] if t.strip()]
    from tunelab.functions.arguments import payload

    item = payload(text)
    return (text if item == text else text.replace(item, " ").strip()), [item]


def _lines(text: str) -> tuple[str, list[str]] | None:
    lines = [x for x in text.splitlines() if x.strip()]
    if len(lines) < 2:
        return None
    marked = [i for i, x in enumerate(lines) if _LINE_ITEM.match(x)]
    if len(marked) >= 2 or (marked and len(lines) == 2):
        first, last = marked[0], marked[-1]
        items = [_LINE_ITEM.match(lines[i]).group(1) for i in marked]  # type: ignore[union-attr]
        rest = lines[:first] + [x for i, x in enumerate(lines[first:last + 1], first)
                                 if i not in marked] + lines[last + 1:]  # fmt: skip
        return " ".join(rest), [_unquote(x) for x in items]
    # plain lines: the instruction is the first line, or the last when the first lines are
    # the texts (the instruction then ends the request, often with a question mark)
    opening = lines[0]
    if _is_instruction(lines[-1]) and not (_is_instruction(opening) or _REFERS.search(opening)):
        return lines[-1], [_unquote(x) for x in lines[:-1]]
    head, *body = lines
    if len(body) == 1:
        inner = _quoted(body[0])
        if inner is not None:
            return head, inner[1]
    return head, [_unquote(x) for x in body]


# words by which a first line points at the texts that follow ("these", "below", 这几条)
_REFERS = re.compile(
    r"(?i)\b(these|them|below|following|each|every)\b|这些|这几|下面|以下|每条|每个|各条"
)


def _is_instruction(line: str) -> bool:
    s = line.strip()
    return s.endswith((":", "：", "?", "？")) or bool(re.match(
        r"(?i)^(please|pls|can you|could you|find|tell|give|list|which|what|for each|"
        r"classify|score|rate|write|draft|check|run|get|do|extract|analy[sz]e|sort|"
        r"请|帮我|帮忙|麻烦|把|给|对|找出|看看|分析|判断|哪些|这些)", s))  # fmt: skip


def _inline(text: str) -> tuple[str, list[str]] | None:
    marks = list(_INLINE.finditer(text))
    if len(marks) < 2:
        return None
    nums = [int(re.search(r"\d+", m.group()).group()) for m in marks]  # type: ignore[union-attr]
    if nums[:2] != [1, 2]:
        return None
    items = []
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(text)
        items.append(text[m.end() : end].strip().rstrip(";；,，"))
    head = text[: marks[0].start()]
    # an instruction after the last item: a sentence after the last text's end
    last = items[-1]
    tail = re.split(r"(?<=[.!?。！？])\s+(?=[A-Z\u4e00-\u9fff])", last, maxsplit=1)
    if len(tail) == 2 and _is_instruction(tail[1]):
        items[-1], head = tail[0], head + " " + tail[1]
    return head, [_unquote(x) for x in items]


# a quoted question right after these words is what to ask, not a text to ask it of
_ASKING = re.compile(r"(?i)(answer|ask|find out|question|回答|找出|问)[^\"“”「」\n]{0,16}$")
# a question: it ends with a question mark, or (Chinese) asks with a question word
_QUESTION_LIKE = re.compile(r"[?？]\s*$|哪|什么|多少|几|谁|怎么|为什么|是否|吗")


def _quoted(text: str) -> tuple[str, list[str]] | None:
    found = [
        m for m in (list(_QUOTED.finditer(text)) or list(_SINGLE.finditer(text)))
        if not (_QUESTION_LIKE.search(m.group(1)) and _ASKING.search(text[: m.start()]))
    ]  # fmt: skip
    if not found:
        return None
    rest = text
    for m in reversed(found):
        rest = rest[: m.start()] + " " + rest[m.end() :]
    return rest, [m.group(1) for m in found]


def _after_colon(text: str) -> tuple[str, list[str]] | None:
    m = _COLON.search(text)
    if not m or not text[m.end() :].strip():
        return None
    head, tail = text[: m.end()], text[m.end() :].strip()
    parts = [_unquote(p) for p in _SEMI.split(tail) if p.strip()]
    return head, parts if len(parts) > 1 else [_unquote(tail)]


def _unquote(s: str) -> str:
    s = s.strip()
    pairs = {'"': '"', "“": "”", "「": "」", "『": "』", "'": "'"}
    if len(s) > 2 and s[0] in pairs and s.endswith(pairs[s[0]]):
        return s[1:-1].strip()
    return s
