"""Entity tag schemes: BIO (IOB2), BIOES and BMES in, BIO inside, spans out.

Every scheme marks the same spans; BIO keeps them with the fewest labels, so all inputs are
converted to it: B->B, S->B, I/M/E->I. ``-`` or ``_`` may separate prefix and type (``B-PER``,
``B_PER``).
"""

from __future__ import annotations

PREFIXES = {"B": "B", "S": "B", "I": "I", "M": "I", "E": "I"}


def parse_tag(tag: str) -> tuple[str, str | None]:
    """``"M-LOC"`` -> ("M", "LOC"); ``"O"`` -> ("O", None). Raises ValueError if malformed."""
    tag = tag.strip()
    if tag == "O":
        return "O", None
    if len(tag) >= 3 and tag[1] in "-_" and tag[0] in PREFIXES and tag[2:].strip():
        return tag[0], tag[2:]
    raise ValueError(f"tag {tag!r} is not O or B-, I-, M-, E-, S- followed by a type")


def to_bio(tags: list[str]) -> list[str]:
    """Convert BIO/BIOES/BMES tags to BIO (IOB2). An I- that starts a span becomes B-."""
    out, prev_type = [], None
    for tag in tags:
        prefix, typ = parse_tag(tag)
        if typ is None:
            out.append("O")
            prev_type = None
            continue
        bio = PREFIXES[prefix]
        if bio == "I" and prev_type != typ:
            bio = "B"  # a span must start with B- in IOB2
        out.append(f"{bio}-{typ}")
        # after E- or S- the span is closed: a following I-/M- of the same type starts anew
        prev_type = None if prefix in "ES" else typ
    return out


def spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) word index of each entity in a BIO sequence, last inclusive."""
    out: list[tuple[str, int, int]] = []
    for i, tag in enumerate(tags):
        if tag == "O":
            continue
        prefix, typ = tag.split("-", 1)
        if prefix == "I" and out and out[-1][0] == typ and out[-1][2] == i - 1:
            out[-1] = (typ, out[-1][1], i)
        else:
            out.append((typ, i, i))
    return out
