"""Reference: the plain Hugging Face Trainer script a user would otherwise write.

Same model, data, epochs, batch size, learning rate and max length as `tunelab train`;
dynamic padding with DataCollatorWithPadding; otherwise Trainer defaults. ``--lora`` wraps the
model with PEFT's LoRA as tunelab's defaults do (r 16, alpha 32, dropout 0.1, all linear
layers, the classification head trained in full): the "HF Trainer + PEFT script". Test scoring
(``trainer.predict``) is timed separately.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/reference_trainer.py --epochs 3 --out /tmp/ref.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/reference_trainer.py --model gemma3-270m --lora \
        --data data/zh_sentiment --max-train-examples 1000 --epochs 1 --batch-size 16 \
        --learning-rate 1e-3
"""

from __future__ import annotations

import argparse
import csv
import json
import time

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {
            "input_ids": self.enc["input_ids"][i],
            "attention_mask": self.enc["attention_mask"][i],
            "labels": self.labels[i],
        }


def read(path):
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="data/en_sentiment")
    ap.add_argument("--model", default="minilm-l6", help="a tunelab alias or a model folder")
    ap.add_argument("--lora", action="store_true", help="PEFT LoRA as tunelab's defaults")
    ap.add_argument("--max-test-examples", type=int)
    ap.add_argument("--epochs", type=float, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--learning-rate", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-train-examples", type=int)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--bf16", action="store_true", help="TrainingArguments(bf16=True)")
    ap.add_argument("--out")
    a = ap.parse_args()
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from tunelab.models import resolve_model  # only to find the offline weights' folder

    path = resolve_model(a.model).path
    tok = AutoTokenizer.from_pretrained(path)
    tr_x, tr_y = read(f"{a.data}/train.csv")
    if a.max_train_examples:
        tr_x, tr_y = tr_x[: a.max_train_examples], tr_y[: a.max_train_examples]
    te_x, te_y = read(f"{a.data}/test.csv")
    if a.max_test_examples:
        te_x, te_y = te_x[: a.max_test_examples], te_y[: a.max_test_examples]
    names = sorted(set(tr_y))
    lid = {n: i for i, n in enumerate(names)}
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names))
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if a.lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            task_type="SEQ_CLS", r=16, lora_alpha=32, lora_dropout=0.1, target_modules="all-linear"
        )
        model = get_peft_model(model, lora)
    enc = lambda xs: tok(xs, truncation=True, max_length=a.max_length)  # noqa: E731
    train = ListDataset(enc(tr_x), [lid[y] for y in tr_y])
    test = ListDataset(enc(te_x), [lid[y] for y in te_y])
    args = TrainingArguments(
        output_dir="/tmp/reference_trainer",
        num_train_epochs=a.epochs,
        per_device_train_batch_size=a.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=a.learning_rate,
        seed=a.seed,
        save_strategy="no",
        report_to=[],
        logging_steps=50,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=a.bf16,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tok)
    )
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    pred = trainer.predict(test).predictions.argmax(-1)
    predict_seconds = time.perf_counter() - t1
    acc = float((pred == np.array(test.labels)).mean())
    import resource

    out = {
        "reference": "transformers.Trainer",
        "train_seconds": seconds,
        "predict_seconds": predict_seconds,
        "test_examples": len(test),
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "examples_per_s": len(train) * a.epochs / seconds,
        "test_accuracy": acc,
        "epochs": a.epochs,
        "train_examples": len(train),
    }
    print(json.dumps(out))
    if a.out:
        json.dump(out, open(a.out, "w"), indent=2)


if __name__ == "__main__":
    main()
