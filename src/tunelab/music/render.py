"""A melody to the files people use: MIDI (pretty_midi), audio rendered offline (WAV, through
tinysoundfont and the General MIDI soundfont that ships inside pretty_midi) and a piano-roll PNG.
Key, tempo and instrument are chosen here, at rendering.

Notes are (MIDI pitch, onset step, duration in steps); a step is a sixteenth note.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from tunelab.errors import TunelabError

SAMPLE_RATE = 22050
TAIL_SECONDS = 0.5  # the last note's release
INSTRUMENTS = {"piano": 0, "celesta": 8, "guitar": 24, "violin": 40, "strings": 48,
               "flute": 73, "recorder": 74, "clarinet": 71, "oboe": 68, "trumpet": 56}  # fmt: skip


def step_seconds(tempo: float) -> float:
    """Seconds per sixteenth note at ``tempo`` quarter notes per minute."""
    return 60.0 / tempo / 4


def instrument_program(instrument: str | int) -> int:
    if isinstance(instrument, int) or str(instrument).isdigit():
        program = int(instrument)
    else:
        program = INSTRUMENTS.get(str(instrument).lower(), -1)
    if not 0 <= program <= 127:
        raise TunelabError(
            f"instrument {instrument!r}: give a General MIDI program 0-127 or one of "
            f"{', '.join(INSTRUMENTS)}"
        )
    return program


def check_tempo(tempo: float) -> float:
    if not 20 <= tempo <= 300:
        raise TunelabError(f"tempo {tempo:g}: give 20-300 quarter notes per minute")
    return float(tempo)


def duration_seconds(notes: list[tuple[int, int, int]], tempo: float, steps: int = 0) -> float:
    """The melody's length: to its last note's end, or ``steps`` when longer (rests at the
    end count)."""
    end = max([steps, *(on + d for _, on, d in notes)])
    return end * step_seconds(tempo)


def to_midi(notes, path: Path, tempo: float = 100, instrument: str | int = "piano") -> Path:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=check_tempo(tempo))
    inst = pretty_midi.Instrument(program=instrument_program(instrument))
    s = step_seconds(tempo)
    for p, on, d in notes:
        inst.notes.append(
            pretty_midi.Note(velocity=90, pitch=int(p), start=on * s, end=(on + d) * s)
        )
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


def soundfont() -> Path:
    import pretty_midi

    return Path(pretty_midi.__file__).with_name("TimGM6mb.sf2")


def synthesize(
    notes,
    tempo: float = 100,
    instrument: str | int = "piano",
    sample_rate: int = SAMPLE_RATE,
    steps: int = 0,
) -> np.ndarray:
    """Mono float32 audio of the melody, rendered with the General MIDI soundfont: exactly the
    melody's length plus a half-second tail."""
    try:
        import tinysoundfont
    except ImportError:
        raise TunelabError(
            "audio needs tinysoundfont: pip install --no-deps tinysoundfont "
            "(`make install` does this)"
        ) from None
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(str(soundfont()))
    synth.program_select(0, sfid, 0, instrument_program(instrument))
    s = step_seconds(check_tempo(tempo))
    events = sorted(
        [(on * s, 1, p) for p, on, d in notes] + [((on + d) * s, 0, p) for p, on, d in notes]
    )  # at one instant, note offs (0) before note ons (1)
    total = int(round((duration_seconds(notes, tempo, steps) + TAIL_SECONDS) * sample_rate))
    out = np.zeros(total, dtype=np.float32)
    pos = 0
    for t, on, p in events:
        at = min(total, int(round(t * sample_rate)))
        if at > pos:
            out[pos:at] = _mono(synth.generate(at - pos))
            pos = at
        if on:
            synth.noteon(0, int(p), 90)
        else:
            synth.noteoff(0, int(p))
    if total > pos:
        out[pos:] = _mono(synth.generate(total - pos))
    return out


def _mono(buffer) -> np.ndarray:
    return np.frombuffer(buffer, dtype=np.float32).reshape(-1, 2).mean(1)


def to_wav(
    notes, path: Path, tempo: float = 100, instrument: str | int = "piano", steps: int = 0
) -> Path:
    audio = synthesize(notes, tempo, instrument, steps=steps)
    peak = float(np.abs(audio).max()) or 1.0
    pcm = (audio / max(peak, 1e-6) * 0.9 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return path


def to_png(notes, path: Path, title: str = "", bar_steps: int = 16, steps: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = max([steps or bar_steps, *(on + d for _, on, d in notes)])
    fig, ax = plt.subplots(figsize=(max(4.0, end / 8), 2.6), dpi=100)
    for p, on, d in notes:
        ax.broken_barh([(on, d)], (p - 0.4, 0.8), facecolors="#3b6ea5")
    for b in range(0, end + 1, bar_steps):
        ax.axvline(b, color="#999", lw=0.6)
    pitches = [p for p, _, _ in notes] or [60]
    ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
    ax.set_xlim(0, end)
    ax.set_xlabel("sixteenth-note steps")
    ax.set_ylabel("MIDI pitch")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render(
    notes,
    stem: Path,
    tempo: float = 100,
    instrument: str | int = "piano",
    title: str = "",
    formats: tuple[str, ...] = ("mid", "wav", "png"),
    steps: int = 0,
) -> dict[str, str]:
    """Write ``stem``.mid / .wav / .png; returns {format: path}. ``steps``: the length in
    sixteenths when rests follow the last note (a melody of rests only needs it)."""
    if not notes and not steps:
        raise TunelabError("nothing to render: the melody has no notes")
    check_tempo(tempo)
    instrument_program(instrument)
    stem.parent.mkdir(parents=True, exist_ok=True)
    writers = {"mid": lambda p: to_midi(notes, p, tempo, instrument),
               "wav": lambda p: to_wav(notes, p, tempo, instrument, steps),
               "png": lambda p: to_png(notes, p, title, steps=steps)}  # fmt: skip
    return {f: str(writers[f](stem.with_suffix(f".{f}"))) for f in formats}
