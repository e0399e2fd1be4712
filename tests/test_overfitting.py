"""Against overfitting: each technique changes training as claimed, runs trained with them
behave like any run, ensembles average their members, and the search prunes and reports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

import tunelab
from conftest import make_tiny_bert, toy_rows, train_args, write_csv
from tunelab.cli import main
from tunelab.training.robust import EmbeddingAttack, rdrop_divergence


def _tiny_classifier(tmp_path, lora: bool = False):
    from transformers import AutoModelForSequenceClassification

    d = make_tiny_bert(tmp_path / "bert")
    model = AutoModelForSequenceClassification.from_pretrained(d, num_labels=2)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["query", "value"], task_type="SEQ_CLS")
        )
    return model


def _batch():
    ids = torch.tensor([[2, 5, 6, 7, 3, 0, 0], [2, 8, 9, 10, 11, 12, 3]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}, torch.tensor([0, 1])


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("kind, epsilon", [("fgm", 0.5), ("fgm", 2.0), ("pgd", 1.0)])
def test_the_adversarial_perturbation_has_the_configured_norm(tmp_path, lora, kind, epsilon):
    model = _tiny_classifier(tmp_path, lora)
    model.eval()  # no dropout: the clean and perturbed losses are comparable
    inputs, y = _batch()
    attack = EmbeddingAttack(model, kind, epsilon, steps=3, alpha=0.4)

    def loss():
        return torch.nn.functional.cross_entropy(model(**inputs).logits, y)

    with attack.capture():
        clean = loss()
        clean.backward()
    grads_after_clean = {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }
    adv = attack.loss(loss, inputs["attention_mask"])
    # FGM: exactly epsilon; PGD: projected into the epsilon ball
    if kind == "fgm":
        assert attack.last_norms.tolist() == pytest.approx([epsilon] * 2, rel=1e-4)
    else:
        assert all(0 < n <= epsilon * (1 + 1e-4) for n in attack.last_norms.tolist())
    assert adv.item() > clean.item()  # uphill: the perturbation raises the loss
    adv.backward()
    changed = [
        n
        for n, g in grads_after_clean.items()
        if not torch.equal(g, dict(model.named_parameters())[n].grad)
    ]
    assert changed  # the adversarial loss adds to the gradients
    attack.close()
    # once closed, the hook is gone: the clean forward gives the clean loss again
    assert loss().item() == pytest.approx(clean.item(), abs=1e-6)


def test_the_perturbation_skips_padding_and_is_removed_after_use(tmp_path):
    model = _tiny_classifier(tmp_path)
    inputs, y = _batch()
    attack = EmbeddingAttack(model, "fgm", 1.5)
    seen = []  # a hook registered after the attack's sees the output the model uses
    model.get_input_embeddings().register_forward_hook(
        lambda m, a, out: seen.append(out.detach().clone())
    )

    def loss():
        return torch.nn.functional.cross_entropy(model(**inputs).logits, y)

    with attack.capture():
        loss().backward()
    attack.loss(loss, inputs["attention_mask"])
    loss()
    clean, perturbed, after = seen
    delta = perturbed - clean
    pad = inputs["attention_mask"] == 0
    assert delta[pad].abs().max().item() == 0.0
    assert delta.flatten(1).norm(dim=1).tolist() == pytest.approx([1.5, 1.5], rel=1e-4)
    assert torch.equal(after, clean)  # the next forward is clean again


def test_rdrop_divergence_is_zero_for_equal_and_symmetric():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert rdrop_divergence(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert rdrop_divergence(a, b).item() == pytest.approx(rdrop_divergence(b, a).item())
    assert rdrop_divergence(a, b).item() > 0
    keep = torch.tensor([True, False, True, False])
    assert rdrop_divergence(a, b, keep).item() == pytest.approx(
        rdrop_divergence(a[keep], b[keep]).item()
    )


@pytest.fixture(scope="module")
def base_run(tiny_model_dir, toy_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("base") / "run"
    assert main(train_args(tiny_model_dir, toy_data, d, "--epochs", "3")) == 0
    return d


def _weights(run):
    from safetensors.torch import load_file

    f = next(run.glob("*.safetensors"))
    return load_file(f)


@pytest.mark.parametrize(
    "extra",
    [
        ["--adversarial", "fgm", "--adv-epsilon", "1.0"],
        ["--adversarial", "pgd", "--adv-steps", "2"],
        ["--rdrop-alpha", "1.0"],
        ["--label-smoothing", "0.1"],
        ["--hidden-dropout", "0.3", "--attention-dropout", "0.2", "--classifier-dropout", "0.4"],
    ],
)
def test_each_technique_changes_training_and_the_run_predicts_like_any_other(
    tiny_model_dir, toy_data, tmp_path, base_run, extra, capsys
):
    run = tmp_path / "run"
    assert main(train_args(tiny_model_dir, toy_data, run, "--epochs", "3", *extra)) == 0
    a, b = _weights(base_run), _weights(run)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # same seed, different training
    info = json.loads((run / "tunelab.json").read_text())
    key = extra[0].lstrip("-").replace("-", "_")
    assert key in info["regularisation"]
    capsys.readouterr()
    (tmp_path / "in.txt").write_text("good great film\n")
    assert main(["predict", "--model-dir", str(run), "--input", str(tmp_path / "in.txt")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert out["label"] in ("negative", "positive")
    m = tunelab.load(run)
    assert m.predict(["good great film"])[0]["label"] == out["label"]
    assert set(m.evaluate(str(toy_data["test"]))) >= {"accuracy", "macro_f1"}


def test_label_smoothing_and_class_weights_reach_the_loss():
    from tunelab.tasks.text_classification import loss_fn

    logits, y = torch.tensor([[2.0, -1.0], [0.5, 0.3]]), torch.tensor([0, 1])
    plain = loss_fn(logits, y, {"labels": ["a", "b"]})
    smooth = loss_fn(logits, y, {"labels": ["a", "b"], "label_smoothing": 0.1})
    weighted = loss_fn(logits, y, {"labels": ["a", "b"], "class_weights": [1.0, 3.0]})
    assert smooth.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1).item()
    )
    assert weighted.item() == pytest.approx(
        torch.nn.functional.cross_entropy(logits, y, weight=torch.tensor([1.0, 3.0])).item()
    )
    assert smooth.item() != plain.item() != weighted.item()


def test_class_weights_auto_are_inverse_frequency(tiny_model_dir, tmp_path, toy_data):
    rows = toy_rows(60, 4)
    rows = [r for r in rows if r["label"] == "positive"] + [
        r for r in rows if r["label"] == "negative"
    ][:10]  # 30 positive, 10 negative
    data = {**toy_data, "train": write_csv(tmp_path / "imbalanced.csv", rows)}
    run, plain = tmp_path / "run", tmp_path / "plain"
    assert (
        main(train_args(tiny_model_dir, data, run, "--epochs", "1", "--class-weights", "auto")) == 0
    )
    assert main(train_args(tiny_model_dir, data, plain, "--epochs", "1")) == 0
    target = json.loads((run / "tunelab.json").read_text())["target"]
    assert target["class_weights"] == pytest.approx([40 / (2 * 10), 40 / (2 * 30)])
    a, b = _weights(run), _weights(plain)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_dropout_overrides_reach_the_model_config(tiny_model_dir, toy_data, tmp_path):
    from tunelab.config import RegularisationArgs
    from tunelab.training.overfitting import dropout_overrides

    r = RegularisationArgs(hidden_dropout=0.3, attention_dropout=0.2, classifier_dropout=0.4)
    kw = dropout_overrides(str(tiny_model_dir), r)
    assert kw == {
        "hidden_dropout_prob": 0.3,
        "attention_probs_dropout_prob": 0.2,
        "classifier_dropout": 0.4,
    }
    run = tmp_path / "run"
    assert (
        main(train_args(tiny_model_dir, toy_data, run, "--epochs", "1", "--hidden-dropout", "0.3"))
        == 0
    )
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["hidden_dropout_prob"] == 0.3


def test_max_train_examples_per_class_keeps_n_per_label(tiny_model_dir, toy_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        main(
            train_args(
                tiny_model_dir,
                toy_data,
                run,
                "--epochs",
                "1",
                "--max-train-examples-per-class",
                "8",
            )
        )
        == 0
    )
    assert "16 train / 32 validation" in capsys.readouterr().err


def test_augmentation_only_touches_training_and_is_saved_for_inspection(
    tiny_model_dir, toy_data, tmp_path, capsys
):
    before = {k: p.read_bytes() for k, p in toy_data.items()}
    runs = []
    for name in ("a", "b"):
        run = tmp_path / name
        assert (
            main(
                train_args(
                    tiny_model_dir,
                    toy_data,
                    run,
                    "--epochs",
                    "1",
                    "--augment",
                    "eda",
                    "--augment-copies",
                    "2",
                    "--augment-alpha",
                    "0.2",
                )
            )
            == 0
        )
        runs.append(run)
    assert "augmented" in capsys.readouterr().err
    rows = list(csv.DictReader(open(runs[0] / "augmented_train.csv", encoding="utf-8")))
    assert 0 < len(rows) <= 2 * 96
    train_texts = {r["text"] for r in csv.DictReader(open(toy_data["train"]))}
    assert all(r["original"] in train_texts and r["augmented"] != r["original"] for r in rows)
    # reproducible by seed, and validation/test untouched (byte for byte)
    assert (runs[0] / "augmented_train.csv").read_bytes() == (
        runs[1] / "augmented_train.csv"
    ).read_bytes()
    assert {k: p.read_bytes() for k, p in toy_data.items()} == before
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["validation"]["n"] == 32 and metrics["test"]["n"] == 32


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--adversarial", "xyz"], "must be fgm or pgd"),
        (["--task", "regression", "--label-smoothing", "0.1"], "applies to"),
        (["--augment", "mlm"], "augment_mlm_model"),
        (["--class-weights", "yes"], "must be auto"),
    ],
)
def test_bad_settings_are_one_line_errors(
    tiny_model_dir, toy_data, tmp_path, capsys, extra, message
):
    assert main(train_args(tiny_model_dir, toy_data, tmp_path / "r", *extra)) != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


@pytest.fixture(scope="module")
def seeds(tiny_model_dir, toy_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("seeds")
    runs = []
    for seed in (1, 2, 3):
        run = d / f"s{seed}"
        assert (
            main(train_args(tiny_model_dir, toy_data, run, "--epochs", "2", "--seed", str(seed)))
            == 0
        )
        runs.append(run)
    return runs


def test_ensemble_probabilities_are_the_mean_of_its_members(seeds, toy_data, tmp_path, capsys):
    ens = tmp_path / "ens"
    assert (
        main(
            [
                "ensemble",
                "--model-dirs",
                *map(str, seeds),
                "--output",
                str(ens),
                "--eval-data",
                str(toy_data["test"]),
            ]
        )
        == 0
    )
    texts = ["good great film", "awful bad plot", "the movie was fine"]
    model = tunelab.load(ens)
    got = model.predict(texts)
    members = [tunelab.load(s).predict(texts) for s in seeds]
    for i, p in enumerate(got):
        for label in ("negative", "positive"):
            assert p["probabilities"][label] == pytest.approx(
                np.mean([m[i]["probabilities"][label] for m in members]), abs=1e-6
            )
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    metrics = json.loads((ens / "metrics.json").read_text())
    assert set(metrics) >= {"ensemble", "eval_data"} and len(metrics) == 2 + len(seeds)
    assert model.evaluate(str(toy_data["test"]))["accuracy"] == pytest.approx(
        metrics["ensemble"]["accuracy"]
    )
    capsys.readouterr()
    # it loads like any other model: predict from the CLI
    (tmp_path / "in.txt").write_text(texts[0] + "\n")
    assert main(["predict", "--model-dir", str(ens), "--input", str(tmp_path / "in.txt")]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert cli["probabilities"]["positive"] == pytest.approx(
        got[0]["probabilities"]["positive"], abs=1e-6
    )
    # self-contained: the members were copied in
    assert len(list((ens / "members").iterdir())) == 3


def test_ensemble_refuses_mismatched_or_single_members(
    seeds, trained_runs, tmp_path, capsys, tiny_model_dir
):
    assert main(["ensemble", "--model-dirs", str(seeds[0]), "--output", str(tmp_path / "e1")]) != 0
    assert "at least two" in capsys.readouterr().err
    rows = toy_rows(32, 9, labels=("bad", "good", "meh"))
    data = {
        "train": write_csv(tmp_path / "t.csv", rows),
        "validation": write_csv(tmp_path / "v.csv", rows),
        "test": write_csv(tmp_path / "s.csv", rows),
    }
    other = tmp_path / "other"
    assert main(train_args(tiny_model_dir, data, other, "--epochs", "1")) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "ensemble",
                "--model-dirs",
                str(seeds[0]),
                str(other),
                "--output",
                str(tmp_path / "e2"),
            ]
        )
        != 0
    )
    assert "labels differ" in capsys.readouterr().err
    assert not (tmp_path / "e2").exists()


def test_search_prunes_writes_results_and_the_best_config(
    tiny_model_dir, toy_data, tmp_path, capsys
):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        f"task: text-classification\nmodel: {tiny_model_dir}\ntrain: {toy_data['train']}\n"
        f"validation: {toy_data['validation']}\nepochs: 3\nbatch_size: 16\nmax_length: 32\n"
        "report_to: none\n"
    )
    space = tmp_path / "space.yaml"
    space.write_text(
        "learning_rate: {low: 1.0e-5, high: 1.0e-2, log: true}\nlabel_smoothing: [0.0, 0.1]\n"
    )
    out = tmp_path / "search"
    assert (
        main(
            [
                "search",
                "--config",
                str(cfg),
                "--space",
                str(space),
                "--trials",
                "6",
                "--output-dir",
                str(out),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    summary = json.loads([x for x in printed.splitlines() if x.startswith("{")][0])
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 6 and {r["state"] for r in rows} <= {"complete", "pruned"}
    done = [r for r in rows if r["state"] == "complete"]
    assert max(float(r["accuracy"]) for r in done) == pytest.approx(summary["best_value"])
    best = (out / "best.yaml").read_text()
    assert f"learning_rate: {summary['best']['learning_rate']}" in best
    assert (out / "best" / "tunelab.json").is_file()
    assert not list(out.glob("trial-*"))  # only the best run is kept
    assert "| trial |" in printed


def test_search_rejects_a_bad_space(tmp_path, capsys, toy_data, tiny_model_dir):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"model: {tiny_model_dir}\ntrain: {toy_data['train']}\n")
    for text, message in (
        ("nope: [1, 2]\n", "unknown key"),
        ("learning_rate: {low: 1, high: 0.1}\n", "below high"),
        ("output_dir: [a, b]\n", "cannot be searched"),
    ):
        space = tmp_path / "space.yaml"
        space.write_text(text)
        assert (
            main(
                [
                    "search",
                    "--config",
                    str(cfg),
                    "--space",
                    str(space),
                    "--output-dir",
                    str(tmp_path / "s"),
                ]
            )
            != 0
        )
        assert message in capsys.readouterr().err
