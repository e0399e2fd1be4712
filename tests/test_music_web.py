"""Music over HTTP in a real `tunelab serve --music` process (JSON with file URLs, or the MIDI,
WAV and PNG themselves; bad input gets 4xx and the server keeps serving), and the composer page
in a real headless chromium inside `tunelab studio --music` (screenshots in
tests/artifacts/music/)."""

from __future__ import annotations

import io
import sys
import time
import urllib.request
import wave
from pathlib import Path

import pytest

from browser_helpers import chromium_page, open_page
from serving_helpers import Server

SHOTS = Path(__file__).parent / "artifacts" / "music"
TUNELAB = str(Path(sys.executable).parent / "tunelab")


def _get(url: str, body: bytes | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET")
    if body:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.read(), r.headers["content-type"]


def test_the_http_endpoint_returns_midi_wav_and_png_and_refuses_bad_input(music_runs, tmp_path):
    s = Server(["--music", f"folk={music_runs['vae']}"], tmp_path / "serve.log")
    try:
        started = time.perf_counter()
        code, c, _ = s.request(
            "POST", "/v1/music/folk/compose", {"mood": "calm", "key": "D minor", "bars": 4}
        )
        assert code == 200, c
        assert time.perf_counter() - started < 30  # generous: the 3 s figure is measured in bench
        assert c["key"] == "D minor" and c["bars"] == 4 and c["tempo"] == 72  # calm's tempo
        status, midi, kind = _get(s.url + c["files"]["mid"])
        assert status == 200 and midi[:4] == b"MThd" and kind == "audio/midi"
        status, audio, kind = _get(s.url + c["files"]["wav"])
        with wave.open(io.BytesIO(audio)) as w:
            assert w.getnframes() / w.getframerate() == pytest.approx(c["seconds"] + 0.5, abs=1e-3)
        assert kind == "audio/wav"
        status, png, kind = _get(s.url + c["files"]["png"])
        assert png[:4] == b"\x89PNG" and kind == "image/png"
        body = b'{"mood": "cheerful", "bars": 2, "format": "wav", "seed": 4}'
        status, audio, kind = _get(s.url + "/v1/music/folk/compose", body)
        assert status == 200 and audio[:4] == b"RIFF" and kind == "audio/wav"
        assert s.request("POST", "/v1/music/folk/compose", {"key": "H# major"})[0] == 422
        assert s.request("POST", "/v1/music/folk/compose", {"mood": "grumpy"})[0] == 422
        assert s.request("POST", "/v1/music/folk/compose", {"bars": 500})[0] == 422
        assert s.request("POST", "/v1/music/nope/compose", {})[0] == 404
        assert s.request("GET", "/v1/music/files/../../etc/passwd")[0] == 404
        assert s.request("GET", "/v1/music/files/melody-0000000000.wav")[0] == 404
        code, again, _ = s.request("POST", "/v1/music/folk/compose", {"bars": 2})
        assert code == 200  # still serving after the bad requests
    finally:
        s.stop()


@pytest.mark.slow
def test_the_composer_page_plays_and_shows_a_melody(music_runs, tmp_path):
    args = ["--runs-dir", str(tmp_path / "runs"), "--music", f"folk={music_runs['vae']}"]
    studio = Server(args, tmp_path / "studio.log", wait_ready=False, command=[TUNELAB, "studio"])
    try:
        studio.wait("/readyz")
        with chromium_page(SHOTS) as page:
            open_page(page, studio.url + "/music")
            page.select_option("#mu-mood", "sad")
            page.fill("#mu-key", "A minor")
            page.fill("#mu-bars", "8")
            page.click("#mu-go")
            page.wait_for_selector("#mu-out:not([hidden])")
            assert "A minor" in page.inner_text("#mu-summary")
            assert page.get_attribute("#mu-audio", "src").endswith(".wav")
            page.wait_for_function("document.getElementById('mu-roll').naturalWidth > 0")
            duration = page.evaluate(
                "new Promise(r => { const a = document.getElementById('mu-audio');"
                " if (a.readyState > 0) r(a.duration);"
                " else a.onloadedmetadata = () => r(a.duration); })"
            )
            assert duration > 1.0  # the browser decoded the WAV
            page.screenshot(path=str(SHOTS / "music.png"), full_page=True)
            page.fill("#mu-key", "H# major")
            page.click("#mu-go")
            page.wait_for_selector("#mu-error:not([hidden])")
            assert "give a tonic A-G" in page.inner_text("#mu-error")
            open_page(page, studio.url + "/music?lang=zh")
            assert "作曲" in page.inner_text("body")
            page.screenshot(path=str(SHOTS / "music-zh.png"), full_page=True)
    finally:
        studio.stop()
