"""``compose_music``: music as a typed task function, backed by a music model folder (a folder
kind of its own, ``music``) in the function registry, and routed by ``tunelab chat``:

    tunelab music train --data runs/essen-data --output-dir runs/melody-vae
    tunelab register compose_music runs/melody-vae
    >>> from tunelab.music.function import compose_music
    >>> compose_music("calm", "D minor", bars=8)
    Composition(midi='compositions/melody-….mid', wav='….wav', png='….png', key='D minor', ...)

The files go to ``$TUNELAB_MUSIC_DIR`` (default ``./compositions``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tunelab.functions.catalog import TaskFunction, register_folder_kind, register_function
from tunelab.functions.registry import model_for
from tunelab.music.compose import Composition, compose, mood_of

ROUTE_EXAMPLES = Path(__file__).with_name("route_examples.csv")
OUT_ENV = "TUNELAB_MUSIC_DIR"


def _open(folder: str):
    from tunelab.music.model import load_music_model

    return load_music_model(folder)


def _describe(folder: str) -> str:
    from tunelab.music.runfolder import read_record

    read_record(folder)  # a clear error for a folder that is not a music run
    return "music"


def _hint(name: str, task: str | None) -> str:
    return (
        "train a music model and register it: tunelab music prepare --source essen "
        "--output-dir runs/essen && tunelab music train --data runs/essen --output-dir "
        f"runs/melody && tunelab register {name} runs/melody"
    )


def compose_music(
    mood: str | None = None,
    key: str | None = None,
    bars: int = 8,
    tempo: float | None = None,
    instrument: str = "piano",
    seed: int | None = None,
) -> Composition:
    """Compose a melody and render it to MIDI, WAV audio and a piano-roll picture.

    Args:
        mood: how it should feel: cheerful, calm, sad, energetic, mysterious, romantic (or a
            word like them, English or Chinese).
        key: the key, e.g. "D minor", "Bb major", "F#", "D小调".
        bars: its length in bars (1-64).
        tempo: quarter notes per minute (20-300); default: the mood's.
        instrument: a General MIDI instrument name (piano, flute, violin, ...) or program 0-127.
        seed: the same seed gives the same melody.
    """
    model = model_for("compose_music", "music")
    out = Path(os.environ.get(OUT_ENV, "compositions"))
    return compose(model, out, mood, key, int(bars), tempo, instrument, seed)


_BARS = re.compile(r"(\d{1,2})\s*(?:bars?|measures?|小节)", re.IGNORECASE)
_TEMPO = re.compile(r"(\d{2,3})\s*(?:bpm|beats per minute)|(?:tempo|速度)\s*(\d{2,3})", re.I)
_KEY_IN = re.compile(
    r"(?<![A-Za-z])(?:in\s+)?([A-G](?:#|b|♯|♭)?\s*(?:major|minor|大调|小调))"
    r"|([降升]?[A-Ga-g]\s*(?:大调|小调))",
    re.IGNORECASE,
)
_INSTRUMENT = re.compile(
    r"\b(piano|celesta|guitar|violin|strings|flute|recorder|clarinet|oboe|trumpet)\b|"
    r"(钢琴|吉他|小提琴|长笛|单簧管|小号)",
    re.I,
)
_ZH_INSTRUMENT = {"钢琴": "piano", "吉他": "guitar", "小提琴": "violin", "长笛": "flute",
                  "单簧管": "clarinet", "小号": "trumpet"}  # fmt: skip


def music_arguments(request: str) -> dict:
    """compose_music's arguments from a request: "play me something calm in D minor, 8 bars
    at 80 bpm on the flute", "来一段欢快的C大调钢琴曲，16小节"."""
    args: dict = {}
    mood = mood_of(request)
    if mood:
        args["mood"] = mood
    k = _KEY_IN.search(request)
    if k:
        args["key"] = (k.group(1) or k.group(2)).strip()
    b = _BARS.search(request)
    if b:
        args["bars"] = int(b.group(1))
    t = _TEMPO.search(request)
    if t:
        args["tempo"] = float(t.group(1) or t.group(2))
    i = _INSTRUMENT.search(request)
    if i:
        args["instrument"] = (i.group(1) or "").lower() or _ZH_INSTRUMENT[i.group(2)]
    return args


register_folder_kind("music", _open, _describe, _hint)
register_function(
    TaskFunction(
        "compose_music",
        compose_music,
        folder_kind="music",
        task="music",
        fill_arguments=music_arguments,
        route_examples=ROUTE_EXAMPLES if ROUTE_EXAMPLES.is_file() else None,
    )
)
