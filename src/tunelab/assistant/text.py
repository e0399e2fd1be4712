"""Words for BM25: English lower-cased and stemmed (Snowball) without stop words, Chinese cut
into words by jieba (search mode: long words also as their parts), digits kept."""

from __future__ import annotations

import re
from functools import lru_cache

_TOKEN = re.compile(r"[a-z0-9]+(?:['_][a-z0-9]+)*|[\u3400-\u4dbf\u4e00-\u9fff]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
STOP_EN = frozenset(
    "a an and are as at be been but by can could do does did for from has have how i if in into "
    "is it its me my of on or our so that the their them then there these they this to was we "
    "were what when where which who why will with would you your".split()
)
STOP_ZH = frozenset(
    "的 了 吗 呢 吧 啊 呀 么 是 我 你 在 和 就 都 也 还 要 有 一个 怎么 什么 请问 亲".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    return jieba


def words(text: str) -> list[str]:
    out: list[str] = []
    for m in _TOKEN.finditer(text.lower()):
        w = m.group()
        if _CJK.match(w):
            out += [t for t in _jieba().lcut_for_search(w) if t not in STOP_ZH]
            # character bigrams too: colloquial wording splits into other words than the FAQ's
            out += [w[i : i + 2] for i in range(len(w) - 1) if w[i : i + 2] not in STOP_ZH]
        elif w not in STOP_EN:
            out.append(w)
    en = [i for i, w in enumerate(out) if not _CJK.match(w)]
    if en:
        stems = _stemmer().stemWords([out[i] for i in en])
        for i, s in zip(en, stems, strict=True):
            out[i] = s
    return out


def is_chinese(text: str) -> bool:
    """Mostly Chinese characters (which encoder reads it, the answer's language)."""
    cjk = len(_CJK.findall(text))
    return cjk > 0 and cjk >= 0.3 * len(re.sub(r"\s", "", text))
