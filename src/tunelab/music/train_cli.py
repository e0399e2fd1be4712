"""``tunelab music train`` and ``tunelab music evaluate``: a VAE or a GAN on a prepared data set
(or fine-tuned from an earlier music run to a style: another collection, a mode, your folder),
written as a run folder; and the objective measures of a run against held-out melodies, side by
side with the random and Markov-chain baselines trained on the same windows."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tunelab.errors import TunelabError

SIZES = {  # VAE sizes: "base" is what the README's figures were measured with
    "tiny": {"z": 8, "embed": 8, "encoder": 16, "conductor": 16, "decoder": 16},
    "small": {"z": 64, "embed": 32, "encoder": 128, "conductor": 128, "decoder": 192},
    "base": {},
}
GAN_WIDTH = {"tiny": 32, "small": 128, "base": 256}


def _echo(m: str) -> None:
    print(m, file=sys.stderr, flush=True)


def _windows(a: argparse.Namespace, bars: int, with_modes: bool = False):
    """(data set record, windows per split[, per training window: its piece is in minor])."""
    from tunelab.music.data import load, piece_modes, windows_of

    record, parts = load(a.data)
    ws = {s: windows_of(ps, bars, a.mode) for s, ps in parts.items()}
    if not ws["train"]:
        raise TunelabError(
            f"{a.data}: no {bars}-bar windows in 4/4 or 2/2"
            + (f" in {a.mode}" if a.mode else "")
            + " to train on"
        )
    if not with_modes:
        return record, ws
    modes = [m for m in piece_modes(parts["train"], bars) if not a.mode or m == a.mode]
    return record, ws, [m == "minor" for m in modes]


def cmd_train(a: argparse.Namespace) -> int:
    from tunelab.machine import describe
    from tunelab.music import runfolder
    from tunelab.music.keys import key_histogram
    from tunelab.music.model import build, load_music_model
    from tunelab.runs import check_output_dir, staged_dir

    out = Path(a.output_dir)
    if not a.resume:
        check_output_dir(out, a.overwrite)
    resume = runfolder.load_checkpoint(out) if a.resume else None
    init = load_music_model(a.init) if a.init else None
    if init is not None and init.kind != a.model:
        raise TunelabError(f"--init {a.init} is a {init.kind}; --model is {a.model}")
    if init is not None:
        config = dict(init.record["config"])
    elif a.model == "vae":
        from tunelab.music.vae import VAEConfig

        config = VAEConfig(bars=a.bars, **SIZES[a.size]).to_json()
    else:
        from tunelab.music.gan import GANConfig

        config = GANConfig(bars=a.bars, width=GAN_WIDTH[a.size]).to_json()
    data_record, ws, minor_flags = _windows(a, config["bars"], with_modes=True)
    training = _training(a)
    import torch

    torch.manual_seed(a.seed)  # the same seed: the same initial weights
    net = build(a.model, config)
    if init is not None:
        net.load_state_dict(init.net.state_dict())
    _echo(
        f"tunelab music: {a.model} | {a.data} ({data_record['source']}"
        + (f", {a.mode}" if a.mode else "")
        + f") | {len(ws['train'])} train / {len(ws['validation'])} validation windows | "
        f"{sum(p.numel() for p in net.parameters()):,} parameters"
        + (f" | fine-tuning {a.init}" if a.init else "")
    )
    started = time.time()
    with staged_dir(out, a.overwrite or a.resume) as stage:
        log = runfolder.EpochLog(stage, out, a.report_to, {**config, **training.to_json()})
        save = lambda state: runfolder.save_checkpoint(out, state)  # noqa: E731
        try:
            if a.model == "vae":
                from tunelab.music.vae_train import attribute_vectors, train_vae

                trained = train_vae(
                    net, ws["train"], ws["validation"], training, log, _echo, save, resume
                )
                attrs = attribute_vectors(net, ws["train"], minor_flags)
                (stage / runfolder.ATTRIBUTES).write_text(json.dumps(attrs))
            else:
                from tunelab.music.gan import Critic, GANConfig, train_gan

                critic = Critic(GANConfig(**config))
                trained = train_gan(net, critic, ws["train"], training, log, _echo, save, resume)
        finally:
            log.close()
        runfolder.save_weights(stage, net)
        record = {
            "kind": a.model,
            "config": config,
            "data": {
                "folder": str(Path(a.data).resolve()),
                "source": data_record["source"],
                "mode": a.mode,
                "windows": {k: len(v) for k, v in ws.items()},
            },  # fmt: skip
            "init": str(Path(a.init).resolve()) if a.init else None,
            "keys": key_histogram(ws["train"]),  # samples are placed in these keys
            "training": {**training.to_json(), **trained, "wall_seconds": time.time() - started},
            "machine": describe(),
        }
        from tunelab.music.measure import measure_run

        record["metrics"] = measure_run(a.model, net, ws, training.seed, a.eval_samples)
        runfolder.write_record(stage, record)
        from tunelab.music.report import write_report

        write_report(stage, record)
    runfolder.drop_checkpoints(out)
    m = record["metrics"]
    print(json.dumps({"output_dir": str(out), "seconds": round(trained["seconds"], 1), **m}))
    return 0


def _training(a: argparse.Namespace):
    common = {"seed": a.seed, "max_minutes": a.max_minutes, "transpose": not a.no_transpose}
    given = {k: v for k, v in (("epochs", a.epochs), ("batch_size", a.batch_size),
                               ("learning_rate", a.learning_rate)) if v is not None}  # fmt: skip
    if a.model == "vae":
        from tunelab.music.vae_train import VAETraining

        extra = {k: v for k, v in (("free_bits", a.free_bits), ("max_beta", a.max_beta))
                 if v is not None}  # fmt: skip
        if a.init and "learning_rate" not in given:
            given["learning_rate"] = 1e-3  # fine-tuning: a third of the base rate
        return VAETraining(**common, **given, **extra)
    from tunelab.music.gan import GANTraining

    return GANTraining(**common, **given)


def cmd_evaluate(a: argparse.Namespace) -> int:
    from tunelab.music.measure import measure_run
    from tunelab.music.model import load_music_model

    model = load_music_model(a.model)
    a.mode = a.mode or model.record["data"].get("mode")
    _, ws = _windows(a, model.bars)
    report = measure_run(model.kind, model.net, ws, a.seed, a.samples, split=a.split)
    print(json.dumps({"model": a.model, "data": a.data, "split": a.split, **report}, indent=1))
    return 0


def add_train(msub) -> None:
    t = msub.add_parser(
        "train",
        help="train a melody VAE or GAN (or fine-tune one to a style with --init)",
        description="Train a MusicVAE-style VAE or a WGAN-GP on 2-bar melodies of a prepared "
        "data set; --init RUN fine-tunes an earlier music run on this data (a style).",
    )
    t.add_argument("--data", required=True, help="a folder from `tunelab music prepare`")
    t.add_argument("--model", choices=("vae", "gan"), default="vae")
    t.add_argument("--output-dir", required=True)
    t.add_argument("--init", help="a music run to fine-tune (pre-trained on a larger corpus)")
    t.add_argument("--mode", choices=("major", "minor"), help="train on this mode only")
    t.add_argument("--bars", type=int, default=2, help="bars per window (default 2)")
    t.add_argument("--size", choices=tuple(SIZES), default="base", help="model size (default base)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--learning-rate", type=float)
    t.add_argument("--free-bits", type=float, help="VAE: KL below this many bits is free")
    t.add_argument("--max-beta", type=float, help="VAE: the KL weight annealing reaches")
    t.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this")
    t.add_argument("--no-transpose", action="store_true", help="no key augmentation")
    t.add_argument("--eval-samples", type=int, default=1000, help="samples measured at the end")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--report-to", choices=("tensorboard", "mlflow", "none"), default="none")
    t.add_argument("--resume", action="store_true", help="go on from the last epoch's checkpoint")
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=cmd_train)
    e = msub.add_parser(
        "evaluate",
        help="measure a music run against held-out melodies and the baselines",
        description="Samples from the prior at temperature 1, unfiltered, against the data "
        "set's held-out windows; the VAE's reconstruction and interpolation too.",
    )
    e.add_argument("--model", required=True, help="a folder from `tunelab music train`")
    e.add_argument("--data", required=True, help="a prepared data set (its held-out split)")
    e.add_argument("--split", choices=("test", "validation"), default="test")
    e.add_argument("--mode", choices=("major", "minor"))
    e.add_argument("--samples", type=int, default=1000)
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=cmd_evaluate)
