"""The reference for bench/serve_load.py: the FastAPI app a user would otherwise hand-write,
one forward pass per request (plain Transformers, no batching).

    TUNELAB_NAIVE_MODEL=exports/hf .venv/bin/uvicorn bench.naive_server:app --port 8001
"""

from __future__ import annotations

import os

import torch
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import AutoModelForSequenceClassification, AutoTokenizer

MODEL = os.environ["TUNELAB_NAIVE_MODEL"]
tokenizer = AutoTokenizer.from_pretrained(MODEL)
model = AutoModelForSequenceClassification.from_pretrained(MODEL).eval()
app = FastAPI()


class Request(BaseModel):
    inputs: str


@app.post("/predict")
def predict(req: Request) -> dict:
    with torch.no_grad():
        enc = tokenizer(req.inputs, truncation=True, max_length=128, return_tensors="pt")
        probs = model(**enc).logits.softmax(-1)[0]
    i = int(probs.argmax())
    return {"label": model.config.id2label[i], "score": float(probs[i])}
