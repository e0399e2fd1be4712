"""Exports on the tiny model: ONNX parity, int8 accuracy really measured, pruning reaching the
asked sparsity, and clear errors for incomplete folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tunelab
from tunelab.cli import main

TEXTS = [
    "good great",
    "bad awful terrible and dull",
    "a film",
    "great fine wonderful good ok",
    "awful",
]


@pytest.fixture(scope="module")
def exports(trained_runs, toy_data, tmp_path_factory):
    """One export per kind, from the LoRA run (so merging is exercised too)."""
    d = tmp_path_factory.mktemp("exports")
    run, test = str(trained_runs["lora"]), str(toy_data["test"])
    kinds = {
        "onnx": ["--format", "onnx"],
        "onnx-int8": ["--format", "onnx", "--quantize", "int8", "--eval-data", test],
        "hf-int8": ["--format", "hf", "--quantize", "int8", "--eval-data", test],
        "magnitude": ["--prune", "magnitude", "--sparsity", "0.5", "--eval-data", test],
        "heads-onnx": [
            "--format",
            "onnx",
            "--prune",
            "heads",
            "--sparsity",
            "0.5",
            "--eval-data",
            test,
        ],
    }
    for name, args in kinds.items():
        assert main(["export", "--model-dir", run, "--output-dir", str(d / name), *args]) == 0
    return {k: d / k for k in kinds}


def export_info(folder) -> dict:
    return json.loads((folder / "tunelab.json").read_text())["export"]


def test_onnx_export_predicts_like_pytorch(exports, trained_runs):
    onnx, run = tunelab.load(exports["onnx"]), tunelab.load(trained_runs["lora"])
    from tunelab.backends import OnnxModule

    assert isinstance(onnx.model, OnnxModule)
    # dynamic axes: batches of different sizes and lengths in one call
    np.testing.assert_allclose(onnx.logits(TEXTS, batch_size=2), run.logits(TEXTS), atol=1e-4)
    a, b = onnx.predict(TEXTS), run.predict(TEXTS)
    assert [x["label"] for x in a] == [x["label"] for x in b]
    for x, y in zip(a, b, strict=True):
        assert abs(x["score"] - y["score"]) < 1e-4
    rec = export_info(exports["onnx"])
    assert rec["merged_method"] == "lora" and rec["parity_fp32"]["max_abs_logit_diff"] < 1e-3
    assert rec["parity_fp32"]["argmax_agreement"] == 1.0 and rec["parity_fp32"]["n"] == 32
    assert json.loads((exports["onnx"] / "config.json").read_text())["id2label"]["1"] == "positive"


def test_onnx_folder_needs_only_onnxruntime_and_tokenizers(exports, trained_runs):
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(exports["onnx"] / "tokenizer.json"))
    tok.enable_padding(pad_id=0)
    enc = tok.encode_batch(TEXTS)
    feeds = {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
    }
    logits = ort.InferenceSession(str(exports["onnx"] / "model.onnx")).run(None, feeds)[0]
    np.testing.assert_allclose(logits, tunelab.load(trained_runs["lora"]).logits(TEXTS), atol=1e-4)


def test_onnx_int8_is_quantized_and_its_accuracy_really_measured(exports, trained_runs, toy_data):
    import onnx

    graph = onnx.load(str(exports["onnx-int8"] / "model.onnx")).graph
    ops = {n.op_type for n in graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "QAttention"}, ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    rec = export_info(exports["onnx-int8"])
    test = str(toy_data["test"])
    assert rec["metrics_after"]["accuracy"] == pytest.approx(
        tunelab.load(exports["onnx-int8"]).evaluate(test)["accuracy"]
    )
    assert rec["metrics_before"]["accuracy"] == pytest.approx(
        tunelab.load(trained_runs["lora"]).evaluate(test)["accuracy"]
    )
    assert rec["parity_int8"]["n"] == 32 and rec["quantize_backend"] == "onnxruntime-dynamic"
    assert rec["quantize_options"] == {"per_channel": True, "reduce_range": True}
    assert (exports["onnx-int8"] / "model.onnx").stat().st_size < (
        exports["onnx"] / "model.onnx"
    ).stat().st_size


def test_hf_int8_loads_quantized_in_tunelab_and_float_in_transformers(exports, toy_data):
    from transformers import AutoModelForSequenceClassification

    loaded = tunelab.load(exports["hf-int8"])
    quantized = [
        n for n, m in loaded.model.named_modules() if "quantized.dynamic" in type(m).__module__
    ]
    assert "classifier" in quantized and len(quantized) == 2 * 6 + 2, quantized
    rec = export_info(exports["hf-int8"])
    assert rec["metrics_after"]["accuracy"] == pytest.approx(
        loaded.evaluate(str(toy_data["test"]))["accuracy"]
    )
    AutoModelForSequenceClassification.from_pretrained(str(exports["hf-int8"]))


def test_magnitude_pruning_reaches_the_asked_sparsity(exports):
    from PIL import Image
    from transformers import AutoModelForSequenceClassification

    m = AutoModelForSequenceClassification.from_pretrained(str(exports["magnitude"]))
    body = [
        mod.weight
        for n, mod in m.named_modules()
        if isinstance(mod, torch.nn.Linear) and "classifier" not in n
    ]
    zeros = sum(int((w == 0).sum()) for w in body) / sum(w.numel() for w in body)
    assert 0.5 <= zeros < 0.52
    assert (m.classifier.weight != 0).all()  # the head is not pruned
    rec = export_info(exports["magnitude"])["prune"]
    assert [c["sparsity"] for c in rec["curve"]] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert rec["achieved_sparsity"] == pytest.approx(zeros)
    assert all("accuracy" in c for c in rec["curve"])
    assert Image.open(exports["magnitude"] / rec["plot"]).size[0] > 100


def test_head_pruning_shrinks_the_onnx_graph_and_keeps_parity(exports):
    import onnx

    rec = export_info(exports["heads-onnx"])
    assert rec["prune"]["heads_total"] == 4 and rec["prune"]["achieved_sparsity"] == 0.5
    assert sorted(rec["prune"]["heads_removed"]) == ["0", "1"]  # one head left per layer
    assert rec["parity_fp32"]["max_abs_logit_diff"] < 1e-3

    def shapes(name):
        return [
            tuple(t.dims) for t in onnx.load(str(exports[name] / "model.onnx")).graph.initializer
        ]

    # one head of 16 left per layer: query/key/value are 32 -> 16, the output 16 -> 32
    pruned, whole = shapes("heads-onnx"), shapes("onnx")
    assert pruned.count((32, 16)) == 6 and pruned.count((16, 32)) == 2, pruned
    assert (32, 16) not in whole and (16, 32) not in whole


def test_sliced_heads_equal_masked_heads(tiny_model_dir):
    """Removing heads physically (ONNX) computes exactly what zeroing them does (hf)."""
    import copy

    from transformers import AutoModelForSequenceClassification

    from tunelab.export.prune import count_heads, mask_heads, slice_pruned_heads

    torch.manual_seed(0)
    a = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2).eval()
    b = copy.deepcopy(a)
    mask_heads(a, {0: [1], 1: [0]})
    slice_pruned_heads(b, {0: [1], 1: [0]})
    assert count_heads(b) == 2 and count_heads(a) == 4
    ids = torch.randint(5, 40, (3, 9))
    mask = torch.ones_like(ids)
    mask[2, 4:] = 0
    with torch.no_grad():
        torch.testing.assert_close(
            a(input_ids=ids, attention_mask=mask).logits,
            b(input_ids=ids, attention_mask=mask).logits,
            atol=1e-5,
            rtol=1e-5,
        )


def test_head_importance_ranks_a_useless_head_last(tiny_model_dir):
    """A head whose output projection is zero cannot change the loss: importance 0."""
    from transformers import AutoModelForSequenceClassification

    from tunelab.export.prune import attention_layers, choose_heads, head_importance

    m = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=2)
    with torch.no_grad():
        attention_layers(m)[1].output.dense.weight[:, 16:] = 0.0  # layer 1, head 1
    ids = torch.randint(5, 40, (8, 7))
    batch = ({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, torch.randint(0, 2, (8,)))
    imp = head_importance(
        m, [batch], lambda out, y: torch.nn.functional.cross_entropy(out.logits, y)
    )
    assert imp.shape == (2, 2) and imp[1, 1] == 0 and (imp[0] > 0).all()
    assert choose_heads(imp, 0.25) == {1: [1]}


def test_incomplete_or_corrupt_export_folders_name_the_file(exports, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(exports["onnx"], broken)
    (broken / "model.onnx").unlink()
    assert main(["predict", "--model-dir", str(broken), "--input", "/dev/null"]) == 2
    err = capsys.readouterr().err
    assert "model.onnx is missing" in err and "Traceback" not in err
    (broken / "model.onnx").write_bytes((exports["onnx"] / "model.onnx").read_bytes()[:500])
    assert main(["predict", "--model-dir", str(broken), "--input", "/dev/null"]) == 2
    assert "model.onnx has 500 bytes" in capsys.readouterr().err  # the checksum list
    (broken / "tokenizer_config.json").unlink()
    assert main(["predict", "--model-dir", str(broken), "--input", "/dev/null"]) == 2
    assert "tokenizer_config.json is missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prune", "magnitude", "--eval-data", "x.csv"], "--prune needs --sparsity"),
        (["--sparsity", "0.3"], "only used with --prune"),
        (["--format", "onnx", "--merge"], "goes with --format hf"),
    ],
)
def test_export_option_errors(args, message, trained_runs, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                "--model-dir",
                str(trained_runs["full"]),
                "--output-dir",
                str(tmp_path / "x"),
                *args,
            ]
        )
        == 2
    )
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_predict_cli_reads_an_onnx_export(exports, trained_runs, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("\n".join(TEXTS) + "\n")
    assert main(["predict", "--model-dir", str(exports["onnx"]), "--input", str(src)]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == [
        p["label"] for p in tunelab.load(trained_runs["lora"]).predict(TEXTS)
    ]


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "missing"])
def test_a_damaged_onnx_export_refuses_to_load(exports, how, tmp_path):
    import shutil
    from pathlib import Path

    from test_integrity import damage
    from tunelab.errors import TunelabError

    folder = Path(shutil.copytree(exports["onnx-int8"], tmp_path / "onnx"))
    assert tunelab.load(folder).predict("good") is not None
    damage(folder / "model.onnx", how)
    with pytest.raises(TunelabError, match="model.onnx"):
        tunelab.load(folder)


def test_quantize_without_eval_data_measures_on_the_runs_own_split(trained_runs, tmp_path):
    import shutil

    run = trained_runs["full"]
    out = tmp_path / "int8"
    assert (
        main(["export", "--model-dir", str(run), "--output-dir", str(out), "--quantize", "int8"])
        == 0
    )
    rec = export_info(out)
    assert rec["eval_data_source"] == "test" and rec["accuracy_measured"] is True
    assert "accuracy" in rec["metrics_after"]
    # the run's data gone: it still quantizes, and says accuracy was not measured
    moved = Path(shutil.copytree(run, tmp_path / "moved"))
    cfg = (moved / "config.yaml").read_text()
    (moved / "config.yaml").write_text(cfg.replace(str(Path(rec["eval_data"]).parent), "/gone"))
    out2 = tmp_path / "int8-unmeasured"
    assert (
        main(["export", "--model-dir", str(moved), "--output-dir", str(out2), "--quantize", "int8"])
        == 0
    )
    rec2 = export_info(out2)
    assert rec2["accuracy_measured"] is False and "metrics_after" not in rec2
    # pruning cannot cut along a curve it cannot measure
    args = ["--prune", "magnitude", "--sparsity", "0.3"]
    assert (
        main(["export", "--model-dir", str(moved), "--output-dir", str(tmp_path / "p"), *args]) == 2
    )
