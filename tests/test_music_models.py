"""The music models on tiny sizes built in the test: the VAE's loss, KL, free bits and annealing,
the GAN's gradient penalty, reproducible generation, rendering (MIDI round trip, audio length,
PNG), composing for a mood and key, and the bad inputs that must get one clear line."""

from __future__ import annotations

import math
import wave
from pathlib import Path

import pytest
import torch

from tunelab.errors import TunelabError
from tunelab.music import encoding, render
from tunelab.music.compose import mood_of, parse_key
from tunelab.music.gan import GANConfig, Generator, gradient_penalty
from tunelab.music.vae import (
    CLASSES,
    MelodyVAE,
    VAEConfig,
    beta_at,
    from_classes,
    kl_divergence,
    slerp,
    to_classes,
    vae_loss,
)

TINY = VAEConfig(z=8, embed=8, encoder=16, conductor=16, decoder=32)
# a scale up and down in 2 bars of quarter and eighth notes: a window in the range
SCALE = [(60, 0, 4), (62, 4, 4), (64, 8, 2), (65, 10, 2), (67, 12, 4),
         (65, 16, 4), (64, 20, 4), (62, 24, 4), (60, 28, 4)]  # fmt: skip


def window(notes=SCALE, steps=32) -> list[int]:
    from tunelab.music.corpus import Piece

    return encoding.tokens(Piece("x", "t", notes=notes))[:steps]


def test_classes_round_trip_the_event_tokens():
    w = window()
    assert from_classes(to_classes(w)) == w
    assert max(to_classes(w)) < CLASSES and min(to_classes(w)) >= 0


def test_kl_is_zero_at_the_prior_and_matches_the_closed_form():
    mu, logvar = torch.zeros(3, 4), torch.zeros(3, 4)
    assert torch.allclose(kl_divergence(mu, logvar), torch.zeros(3))
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]])
    # 0.5 * (mu^2 + var - 1 - log var) per dimension
    expected = 0.5 * (1 + 1 - 1 - 0) + 0.5 * (0 + 4 - 1 - math.log(4.0))
    assert float(kl_divergence(mu, logvar)) == pytest.approx(expected)


def test_free_bits_make_a_small_kl_free_and_beta_anneals_upwards():
    recon = torch.tensor([10.0, 10.0])
    small, big = torch.tensor([2.0, 2.0]), torch.tensor([50.0, 50.0])
    free = 8 / math.log2(math.e)  # 8 bits in nats
    assert float(vae_loss(recon, small, 1.0, 8)) == pytest.approx(10.0)
    assert float(vae_loss(recon, big, 0.5, 8)) == pytest.approx(10 + 0.5 * (50 - free))
    betas = [beta_at(s, 0.2, 0.99) for s in (0, 10, 100, 1000)]
    assert betas[0] == 0 and betas == sorted(betas) and betas[-1] == pytest.approx(0.2, abs=1e-4)


def test_the_tiny_vae_learns_to_reconstruct_a_few_melodies_without_teacher_forcing():
    from tunelab.music.data import as_tensor
    from tunelab.music.vae_train import reconstruction

    torch.manual_seed(0)
    ws = [encoding.transpose(window(), k) for k in (-5, -2, 0, 3, 5, 7)]
    ws += [window([(p, on, d) for p, on, d in reversed(SCALE)])]  # onsets out of order: fine
    ws = [w for w in ws if w is not None]
    x = as_tensor(ws)
    cfg = VAEConfig(z=8, embed=8, encoder=32, conductor=32, decoder=64, word_dropout=0.0)
    model = MelodyVAE(cfg)
    before = reconstruction(model, x)["reconstruction_accuracy"]
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    model.train()
    first = None
    for _ in range(170):
        recon, kl, _ = model(x)
        loss = vae_loss(recon, kl, 0.01, 16)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    after = reconstruction(model, x)
    assert after["reconstruction_accuracy"] > max(0.9, before)
    assert after["kl_nats"] > 0.5  # the posterior carries information: not collapsed


def test_slerp_ends_at_its_ends_and_keeps_the_norm_between_equal_norm_codes():
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert torch.allclose(slerp(a, b, 0.0), a, atol=1e-5)
    assert torch.allclose(slerp(a, b, 1.0), b, atol=1e-5)
    assert float(slerp(a, b, 0.5).norm()) == pytest.approx(3.0, rel=1e-5)


class _LinearCritic(torch.nn.Module):
    """f(x) = <w, x>: its gradient is w everywhere, so the penalty is (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, roll, mode):
        return (roll * self.w).flatten(1).sum(1)


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0, 2.5])
def test_the_gradient_penalty_is_the_squared_distance_of_the_gradient_norm_from_one(scale):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, CLASSES, generator=g)
    w = w / w.norm() * scale
    critic = _LinearCritic(w)
    real, fake = torch.rand(5, 32, CLASSES), torch.rand(5, 32, CLASSES)
    gp = gradient_penalty(critic, real, fake, torch.zeros(5, dtype=torch.long))
    assert gp.item() == pytest.approx((scale - 1.0) ** 2, abs=1e-5)
    gp.backward()  # it trains the critic: the penalty has a gradient
    assert critic.w.grad is not None


def test_generation_is_reproducible_under_a_seed(tmp_path):
    from tunelab.music.model import MusicModel

    torch.manual_seed(0)
    vae = MusicModel("vae", MelodyVAE(TINY).eval(), {"config": TINY.to_json()}, tmp_path)
    assert vae.sample(4, 1.0, seed=7) == vae.sample(4, 1.0, seed=7)
    assert vae.sample(4, 1.0, seed=7) != vae.sample(4, 1.0, seed=8)
    gan = MusicModel("gan", Generator(GANConfig(width=32)).eval(), {"config": {}}, tmp_path)
    assert gan.sample(4, seed=3, mode="minor") == gan.sample(4, seed=3, mode="minor")
    assert all(len(w) == 32 for w in gan.sample(4, seed=3))


def test_midi_written_and_read_back_keeps_the_notes(tmp_path):
    from tunelab.music.corpus import read_source

    path = render.to_midi(SCALE, tmp_path / "scale.mid", tempo=100)
    (piece,) = read_source(str(path), workers=1, log=lambda m: None)
    assert piece.notes == SCALE  # MIDI -> notes -> tokens -> notes: nothing moved
    assert encoding.notes_of(encoding.tokens(piece)) == SCALE


def test_audio_has_the_melody_s_length_plus_the_tail(tmp_path):
    files = render.render(SCALE, tmp_path / "m", tempo=120, instrument="flute", title="t")
    with wave.open(files["wav"]) as w:
        seconds = w.getnframes() / w.getframerate()
        assert w.getnchannels() == 1
        frames = w.readframes(w.getnframes())
    # 32 sixteenths at 120 quarter notes per minute: 4 s, then the half-second tail
    assert seconds == pytest.approx(32 * 0.125 + render.TAIL_SECONDS, abs=1 / 22050)
    assert any(frames)  # not silence
    assert Path(files["png"]).read_bytes()[:4] == b"\x89PNG"
    assert Path(files["mid"]).read_bytes()[:4] == b"MThd"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("D minor", (2, "minor")),
        ("Bb major", (10, "major")),
        ("F#", (6, None)),
        ("am", (9, "minor")),
        ("D小调", (2, "minor")),
        ("降B大调", (10, "major")),
        ("c sharp minor", (1, "minor")),
    ],
)
def test_keys_are_read_in_english_and_chinese(text, expected):
    assert parse_key(text) == expected


@pytest.mark.parametrize("text", ["H# major", "D dorian-ish", "", "C##"])
def test_an_impossible_key_is_one_clear_error(text):
    with pytest.raises(TunelabError, match="give a tonic A-G"):
        parse_key(text)


def test_moods_are_found_in_requests_in_both_languages():
    assert mood_of("play me something cheerful") == "cheerful"
    assert mood_of("来一段悲伤的曲子") == "sad"
    assert mood_of("something for sleeping") == "calm"
    assert mood_of("a tune") is None


def test_bad_tempo_instrument_and_empty_melodies_are_refused(tmp_path):
    with pytest.raises(TunelabError, match="tempo 5"):
        render.render(SCALE, tmp_path / "x", tempo=5)
    with pytest.raises(TunelabError, match="instrument 'kazoo'"):
        render.render(SCALE, tmp_path / "x", instrument="kazoo")
    with pytest.raises(TunelabError, match="no notes"):
        render.render([], tmp_path / "x")


def test_samples_are_placed_in_the_training_data_s_keys_without_changing_their_intervals():
    from tunelab.music.keys import key_histogram, place_in_keys
    from tunelab.music.metrics import best_scale

    w = window()  # C major
    hist = key_histogram([w, encoding.transpose(w, 2)])
    assert hist["major"][0] == 1 and hist["major"][2] == 1 and not any(hist["minor"])
    only_d = {"major": [0, 0, 1] + [0] * 9, "minor": [0] * 12}
    (moved,) = place_in_keys([w], only_d, seed=0)
    assert best_scale(moved)[:2] == (2, "major")
    intervals = lambda s: [b[0] - a[0] for a, b in zip(s, s[1:], strict=False)]  # noqa: E731
    assert intervals(encoding.notes_of(moved)) == intervals(encoding.notes_of(w))
