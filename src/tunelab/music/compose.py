"""A melody for a request: a mood (English or Chinese) picks the mode, attribute shifts and a
tempo; the model writes 2-bar phrases arranged as a tune is (A A' B A: a phrase, its variation,
a contrasting phrase, the phrase again); the result moves to the requested key and is rendered
to MIDI, WAV and a piano-roll PNG.

The phrases are chosen among a few candidates drawn from the prior (in the requested mode, in
key, no empty bar): composing filters, measuring never does (:mod:`tunelab.music.measure`).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tunelab.errors import TunelabError
from tunelab.music import encoding, metrics, render
from tunelab.music.model import MusicModel

# mood -> (mode, attribute shifts in attribute vectors, tempo)
MOODS: dict[str, tuple[str, dict[str, float], int]] = {
    "cheerful": ("major", {"density": 1.0, "register": 0.5}, 120),
    "calm": ("major", {"density": -1.0, "register": -0.5}, 72),
    "sad": ("minor", {"density": -0.5}, 66),
    "energetic": ("major", {"density": 1.5}, 140),
    "mysterious": ("minor", {"register": -1.0}, 90),
    "romantic": ("major", {"density": -0.5}, 84),
}
MOOD_WORDS: dict[str, tuple[str, ...]] = {
    "cheerful": ("cheerful", "happy", "joyful", "bright", "upbeat", "playful", "merry", "fun",
                 "欢快", "开心", "快乐", "高兴", "愉快", "明快", "喜庆"),
    "calm": ("calm", "peaceful", "relax", "gentle", "sooth", "quiet", "serene", "sleep",
             "平静", "安静", "舒缓", "放松", "轻柔", "宁静", "安宁", "睡"),
    "sad": ("sad", "melanchol", "sorrow", "gloomy", "mournful", "lonely", "悲伤", "伤感",
            "忧伤", "难过", "哀伤", "孤独"),
    "energetic": ("energetic", "exciting", "lively", "fast", "upbeat", "dance", "激昂", "活泼",
                  "动感", "兴奋", "热烈", "跳舞"),
    "mysterious": ("mysterious", "dark", "tense", "spooky", "eerie", "神秘", "阴暗", "紧张",
                   "诡异"),
    "romantic": ("romantic", "tender", "love", "sweet", "浪漫", "温柔", "甜蜜", "爱情"),
}  # fmt: skip
TONICS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
_KEY = re.compile(
    r"^\s*(?P<acc1>[降升])?\s*(?P<tonic>[A-Ga-g])\s*(?P<acc>#|♯|b|♭|-?sharp|-?flat|\s+sharp|"
    r"\s+flat)?\s*(?P<mode>major|minor|maj|min|m|大调|小调|调)?\s*$"
)
MAX_BARS = 64


def mood_of(text: str | None) -> str | None:
    """The mood a word or request names (None: none named)."""
    if not text:
        return None
    low = text.lower()
    if low in MOODS:
        return low
    for mood, words in MOOD_WORDS.items():
        if any(w in low for w in words):
            return mood
    return None


def parse_key(text: str) -> tuple[int, str | None]:
    """(tonic pitch class, "major" / "minor" / None) of a key name: "D minor", "Bb", "F# major",
    "c minor", "Am", "D小调", "降B大调"."""
    m = _KEY.match(text or "")
    if not m:
        raise TunelabError(
            f"key {text!r}: give a tonic A-G with an optional # or b and major or minor "
            "(e.g. 'D minor', 'Bb major', 'F#', 'D小调', '降B大调')"
        )
    tonic = TONICS[m["tonic"].lower()]
    acc = (m["acc"] or "").strip().lstrip("-")
    if acc in ("#", "♯", "sharp") or m["acc1"] == "升":
        tonic += 1
    elif acc in ("b", "♭", "flat") or m["acc1"] == "降":
        tonic -= 1
    mode = m["mode"]
    if mode in ("minor", "min", "m", "小调"):
        mode = "minor"
    elif mode in ("major", "maj", "大调"):
        mode = "major"
    else:
        mode = None
    return tonic % 12, mode


def key_name(tonic: int, mode: str) -> str:
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    return f"{names[tonic % 12]} {mode}"


@dataclass(frozen=True)
class Composition:
    """A melody written for a request, and where its files are."""

    midi: str
    wav: str
    png: str
    key: str
    mood: str | None
    bars: int
    tempo: float
    instrument: str
    notes: int
    seconds: float  # the music's length


def _ok(w: list[int], mode: str | None, bar_steps: int) -> float:
    """A candidate phrase's score: in the mode, in key, no empty bar, some movement."""
    tonic, m, in_key = metrics.best_scale(w)
    score = in_key
    if mode and m != mode:
        score -= 1.0
    if metrics.empty_bar_ratio(w, bar_steps) > 0:
        score -= 1.0
    if len({p for p, _, _ in encoding.notes_of(w)}) < 3:
        score -= 0.5
    return score


def write_melody(
    model: MusicModel,
    bars: int,
    mode: str | None,
    shifts: dict[str, float],
    seed: int,
    temperature: float = 0.9,
) -> list[int]:
    """Tokens of ``bars`` bars: phrases A A' B A (repeated as needed) from the model."""
    per = model.bars
    phrases = max(1, -(-bars // per))
    if model.kind == "vae" and mode == "minor" and "minor" in model.attributes:
        shifts = {**shifts, "minor": shifts.get("minor", 0.0) + 1.0}
    elif model.kind == "vae" and mode == "major" and "minor" in model.attributes:
        shifts = {**shifts, "minor": shifts.get("minor", 0.0) - 0.5}
    shifts = {k: v for k, v in shifts.items() if k in model.attributes or model.kind == "gan"}
    cands = model.sample(12, temperature, seed, mode, shifts if model.kind == "vae" else None)
    ranked = sorted(range(len(cands)), key=lambda i: -_ok(cands[i], mode, model.bar_steps))
    a, b = cands[ranked[0]], cands[ranked[1]]
    variation = a
    if model.kind == "vae":  # a nearby code: the same phrase, varied
        z = model.latent([a])
        g = torch.Generator().manual_seed(seed + 1)
        variation = model.decode(z + 0.6 * torch.randn(z.shape, generator=g))[0]
    home = metrics.best_scale(a)[0]  # every phrase in the first one's key
    b, variation = to_key(b, home), to_key(variation, home)
    pattern = [a, variation, b, a]
    seq: list[int] = []
    for i in range(phrases):
        seq += pattern[i % 4]
    return seq[: bars * model.bar_steps]


def to_key(seq: list[int], tonic: int) -> list[int]:
    """``seq`` moved to the nearest transposition whose tonic is ``tonic``."""
    own, _, _ = metrics.best_scale(seq)
    k = (tonic - own) % 12
    k = k - 12 if k > 6 else k
    for shift in (k, k - 12 if k > 0 else k + 12):
        out = encoding.transpose(seq, shift)
        if out is not None:
            return out
    return [t + k if t >= encoding.FIRST_PITCH else t for t in seq]  # outside 48-84: fine for MIDI


def compose(
    model: MusicModel,
    out_dir: Path,
    mood: str | None = None,
    key: str | None = None,
    bars: int = 8,
    tempo: float | None = None,
    instrument: str = "piano",
    seed: int | None = None,
) -> Composition:
    if not 1 <= bars <= MAX_BARS:
        raise TunelabError(f"bars {bars}: give 1-{MAX_BARS}")
    named = mood_of(mood)
    if mood and named is None:
        raise TunelabError(f"mood {mood!r}: give one of {', '.join(MOODS)} (or a word like them)")
    mode, shifts, mood_tempo = MOODS[named] if named else (None, {}, 100)
    tonic = None
    if key:
        tonic, key_mode = parse_key(key)
        mode = key_mode or mode
    tempo = render.check_tempo(tempo or mood_tempo)
    render.instrument_program(instrument)
    if seed is None:
        seed = int(time.time_ns() % 2**31)
    seq = write_melody(model, bars, mode, shifts, seed)
    own, found_mode, _ = metrics.best_scale(seq)
    if tonic is not None:
        seq = to_key(seq, tonic)
    notes = encoding.notes_of(seq)
    name = key_name(tonic if tonic is not None else own, mode or found_mode)
    tag = hashlib.sha1(f"{named}|{name}|{bars}|{tempo}|{seed}".encode()).hexdigest()[:10]
    title = f"{named or 'melody'}, {name}, {bars} bars, {tempo:g} bpm"
    files = render.render(notes, out_dir / f"melody-{tag}", tempo, instrument, title)
    return Composition(
        files["mid"], files["wav"], files["png"], name, named, bars, tempo, instrument,
        len(notes), round(render.duration_seconds(notes, tempo), 3),
    )  # fmt: skip
