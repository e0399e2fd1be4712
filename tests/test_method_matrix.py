"""The method test matrix: every registered method joins it (tiny BERT built in the test).

Per method: it trains, the loss falls on a learnable toy set, exactly the parameters the method
names are trainable (and the head always is), the model saved is the model reloaded, and a
mergeable method's merged export predicts like the unmerged model with plain Transformers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import tunelab
from conftest import method_run_config, tiny_decoder_config
from tunelab.methods import METHODS, Method, MethodContext, count_parameters, get_method
from tunelab.tasks import text_classification as tc

TEXTS = ["great wonderful phone", "awful terrible film", "the movie was fine", "sad and broken"]
CLASSIFIERS = [m for m in METHODS if METHODS[m].supports(tc.TASK)]


def _apply(
    name: str, model: torch.nn.Module, options: dict, head=("classifier",), total_steps: int = 20
) -> torch.nn.Module:
    """``name``'s apply with its typed options (defaults, then ``options``)."""
    m = get_method(name)
    return m.apply(model, m.make_options(options), MethodContext(tc.TASK, tuple(head), total_steps))


@pytest.fixture(scope="module")
def matrix_runs(learnable_model_dir, toy_data, tmp_path_factory):
    """One run per method, with the in-memory model captured just before it is saved. The
    tiny random model needs larger steps than the methods' defaults, which are tuned for
    pretrained models."""
    from tunelab.training import pipeline

    runs = {}
    for name in CLASSIFIERS:
        m = get_method(name)
        captured = {}

        def spy_save(model, out, real=m.save, captured=captured):
            captured["model"] = model
            real(model, out)

        METHODS[name] = Method(**{**m.__dict__, "save": spy_save})
        try:
            out = tmp_path_factory.mktemp(f"matrix-{name}") / "run"
            cfg = method_run_config(
                learnable_model_dir,
                toy_data,
                out,
                name,
                epochs=10,
                learning_rate=3e-3 if name in ("full", "freeze") else 1e-2,
                early_stopping_patience=0,
            )
            pipeline.run_training(cfg, echo=lambda s: None)
        finally:
            METHODS[name] = m
        runs[name] = (out, captured["model"])
    return runs


def _trainable(name: str, model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _fresh(tiny_model_dir):
    torch.manual_seed(0)  # the same random head every time
    return tc.build_model(str(tiny_model_dir), {"labels": ["negative", "positive"]})


# what each method trains, as a predicate on parameter names (the head always trains)
EXPECTED = {
    "full": lambda n: True,
    "freeze": lambda n: n.startswith(
        ("bert.encoder.layer.0.", "bert.encoder.layer.1.", "bert.pooler.", "classifier.")
    ),
    "bitfit": lambda n: n.endswith(".bias") or n.startswith("classifier."),
    "lora": lambda n: "lora_" in n or "classifier" in n,
    "adalora": lambda n: "lora_" in n or "classifier" in n,
    "ia3": lambda n: "ia3_l" in n or "classifier" in n,
    "prompt-tuning": lambda n: "prompt_encoder" in n or "classifier" in n,
    "p-tuning": lambda n: "prompt_encoder" in n or "classifier" in n,
    "prefix-tuning": lambda n: n in ("keys", "values") or n.startswith("model.classifier."),
    # everything trains in SetFit's contrastive stage; its before_training then leaves the head
    "setfit": lambda n: True,
    "adapter": lambda n: (
        ".tunelab_adapter." in n
        or "LayerNorm" in n
        and "embeddings" not in n
        or n.startswith("classifier.")
    ),
}


def test_every_method_is_in_the_matrix():
    assert set(EXPECTED) == set(METHODS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_trainable_parameters_are_what_the_method_says(name, tiny_model_dir):
    model = _apply(
        name,
        _fresh(tiny_model_dir),
        {
            "lora_r": 4,
            "num_virtual_tokens": 4,
            "adapter_size": 8,
            "freeze_trainable_layers": 2 if name != "freeze" else 2,
        },
    )
    names = _trainable(name, model)
    assert any("classifier" in n for n in names), "the head must always train"
    wrong = [n for n in names if not EXPECTED[name](n.replace("base_model.model.", ""))]
    assert not wrong, wrong
    trainable, total = count_parameters(model)
    assert 0 < trainable <= total
    if name not in ("full", "setfit"):
        assert trainable < total


def test_freeze_counts_layers(tiny_model_dir):
    """freeze_trainable_layers N: embeddings and the lower layers frozen, the top N train."""
    base = _fresh(tiny_model_dir)
    layer = sum(p.numel() for p in base.bert.encoder.layer[1].parameters())
    head = sum(p.numel() for p in base.classifier.parameters()) + sum(
        p.numel() for p in base.bert.pooler.parameters()
    )
    for n, expect in ((0, head), (1, head + layer), (2, head + 2 * layer)):
        m = _apply("freeze", _fresh(tiny_model_dir), {"freeze_trainable_layers": n})
        assert count_parameters(m)[0] == expect


def test_adapter_counts_and_starts_as_identity(tiny_model_dir):
    """An adapter adds 2*d*s + s + d numbers, Houlsby two per layer, Pfeiffer one; with its
    up-projection at zero the model computes exactly what it did before."""
    ids = {"input_ids": torch.tensor([[2, 5, 9, 3]]), "attention_mask": torch.ones(1, 4).long()}
    base = _fresh(tiny_model_dir).eval()
    with torch.no_grad():
        before = base(**ids).logits
    d, s = 32, 8
    per = 2 * d * s + s + d
    counts = {}
    for placement in ("houlsby", "pfeiffer"):
        m = _apply(
            "adapter",
            _fresh(tiny_model_dir).eval(),
            {"adapter_size": s, "adapter_placement": placement},
        )
        counts[placement] = sum(
            p.numel() for n, p in m.named_parameters() if ".tunelab_adapter." in n
        )
        with torch.no_grad():
            torch.testing.assert_close(m(**ids).logits, before)
    assert counts == {"houlsby": 2 * 2 * per, "pfeiffer": 2 * per}


def test_bitfit_refuses_a_model_without_biases():
    from transformers import LlamaForSequenceClassification

    from tunelab.errors import ConfigError

    model = LlamaForSequenceClassification(
        tiny_decoder_config(50, num_hidden_layers=1, pad_token_id=0)
    )
    with pytest.raises(ConfigError, match="needs bias terms"):
        _apply("bitfit", model, {}, ["score"])


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_loss_falls_and_the_run_reloads_identically(name, matrix_runs):
    run, in_memory = matrix_runs[name]
    losses = [
        json.loads(line)["loss"] for line in (run / "train_log.jsonl").open() if '"train"' in line
    ]
    assert len(losses) >= 5, losses
    if METHODS[name].before_training:  # the stage before the loop trained it (SetFit's
        # contrastive encoder and fitted head): the loop's loss starts below chance
        assert max(losses) < np.log(2), losses
    else:
        assert losses[-1] < losses[0], losses
    loaded = tunelab.load(run)
    from tunelab.data.batching import predict_logits, tokenize

    before = predict_logits(in_memory, tokenize(loaded.tokenizer, TEXTS, 32), 0)
    np.testing.assert_allclose(loaded.logits(TEXTS), before, atol=1e-6)
    np.testing.assert_array_equal(loaded.logits(TEXTS), tunelab.load(run).logits(TEXTS))
    info = json.loads((run / "tunelab.json").read_text())
    assert info["method"] == name and info["parameters"]["trainable"] > 0


# a mean-pooled head (SetFit) has no plain-Transformers export: tests/test_setfit.py checks the
# refusal and its ONNX export
@pytest.mark.parametrize(
    "name", [m for m in CLASSIFIERS if METHODS[m].merge and "pooling" not in METHODS[m].spec]
)
def test_merged_export_predicts_like_the_run_with_plain_transformers(name, matrix_runs, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.export import export_merged

    run, _ = matrix_runs[name]
    out = export_merged(run, tmp_path / "merged")
    assert not (out / "adapter_config.json").exists()
    plain = AutoModelForSequenceClassification.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    with torch.no_grad():
        logits = plain(**tok(TEXTS, padding=True, return_tensors="pt")).logits.numpy()
    expected = tunelab.load(run).logits(TEXTS)
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert plain.config.id2label[1] == "positive"
    # the export is also a tunelab model folder
    again = tunelab.load(out)
    assert again.info.export["merged_method"] == name
    np.testing.assert_allclose(again.logits(TEXTS), expected, atol=1e-4)


@pytest.mark.parametrize("name", [m for m in CLASSIFIERS if not METHODS[m].merge])
def test_unmergeable_methods_say_so(name, matrix_runs, tmp_path, capsys):
    from tunelab.cli import main

    run, _ = matrix_runs[name]
    assert (
        main(["export", "--model-dir", str(run), "--merge", "--output-dir", str(tmp_path / "x")])
        == 2
    )
    assert f"method '{name}' cannot be merged" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_adalora_reallocates_ranks(matrix_runs):
    """The loop calls PEFT's allocation step: ranks end unequal and the budget shrinks; the
    final allocation is recorded and survives reload."""
    run, model = matrix_runs["adalora"]
    details = json.loads((run / "tunelab.json").read_text())["method_details"]["adalora"]
    ranks = details["final_ranks"]
    assert details["total_rank"]["final"] < details["total_rank"]["initial"]
    assert len(set(ranks.values())) > 1, ranks
    assert "AdaLoRA" in (run / "report.html").read_text()
    loaded = tunelab.load(run)
    kept = {
        n: m.lora_E["default"].shape[0]
        for n, m in loaded.model.named_modules()
        if hasattr(m, "lora_E") and "default" in m.lora_E
    }
    assert sorted(kept.values()) == sorted(ranks.values())


def test_methods_command_lists_the_registry(capsys):
    from tunelab.cli import main

    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name, m in METHODS.items():
        assert f"{name} " in out and f"lr {m.default_learning_rate:g}" in out


def test_lora_options_rslora_and_dora(tiny_model_dir):
    """use_rslora scales by alpha/sqrt(r); use_dora adds a trained magnitude per output."""
    opts = {"lora_r": 4, "lora_alpha": 8}
    plain = _apply("lora", _fresh(tiny_model_dir), opts)
    rs = _apply("lora", _fresh(tiny_model_dir), {**opts, "use_rslora": True})
    dora = _apply("lora", _fresh(tiny_model_dir), {**opts, "use_dora": True})

    def scaling(m):
        return next(x.scaling["default"] for x in m.modules() if hasattr(x, "lora_A"))

    assert scaling(plain) == pytest.approx(8 / 4) and scaling(rs) == pytest.approx(8 / 2)
    assert any("lora_magnitude_vector" in n for n, p in dora.named_parameters() if p.requires_grad)
    assert count_parameters(dora)[0] > count_parameters(plain)[0]


def test_prefix_model_masks_and_positions(tiny_model_dir):
    """The prefixes enter through the attention cache: with them masked out the model is the
    base model exactly (so the mask and position ids are right); unmasked they change it."""
    from tunelab.methods.prefix import PrefixModel

    base = _fresh(tiny_model_dir).eval()
    wrapped = PrefixModel(_fresh(tiny_model_dir).eval(), 3).eval()
    assert wrapped.keys.shape == (2, 2, 3, 16)  # layers, heads, tokens, head dim
    ids = torch.tensor([[2, 5, 9, 11, 3], [2, 7, 3, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        ref = base(input_ids=ids, attention_mask=mask).logits
        hidden = wrapped.model(
            input_ids=ids,
            attention_mask=torch.cat([torch.zeros(2, 3).long(), mask], 1),
            cache=_cache(wrapped, 2),
            position_ids=torch.arange(5).expand(2, 5),
        ).logits
        seen = wrapped(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(hidden, ref)
    assert not torch.allclose(seen, ref)


def _cache(wrapped, b):
    from transformers import DynamicCache

    cache = DynamicCache()
    for i in range(wrapped.keys.shape[0]):
        cache.update(
            wrapped.keys[i].expand(b, -1, -1, -1), wrapped.values[i].expand(b, -1, -1, -1), i
        )
    return cache
