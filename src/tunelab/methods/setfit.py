"""SetFit (Tunstall et al., 2022): few-shot text classification by contrastive fine-tuning of a
sentence encoder, then a classifier over its embeddings.

From a handful of labelled texts per class it makes many pairs: for every text, ``setfit_pairs``
texts of its own class (similar, target cosine 1) and as many of other classes (dissimilar,
target 0), each unordered pair once, identical texts never paired, and as many dissimilar pairs
as similar ones. The encoder (its mean-pooled, unit-length embedding; the sentence-embedding
task's pair model, trained by the same supervised step as every run) learns to bring a class
together with SetFit's cosine-similarity loss; a logistic regression on the tuned embeddings then
gives the head's starting weights, and the usual loop trains the head (the encoder frozen, or
with it: ``setfit_end_to_end``), scored on validation like any run.

The run folder is a text-classification run like any other (full weights, ``"pooling":
"mean"`` in its spec: :mod:`tunelab.tasks.pooled_head`); it predicts, serves and exports to
ONNX (which traces the mean pooling) like any other; ``--format hf`` is refused, since a plain
Transformers classifier would read its [CLS] token instead. A resumed run repeats the
contrastive stage from the seed (seconds) and restores the head from its checkpoint.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import numpy as np
import torch

from tunelab.errors import DataError
from tunelab.methods.base import Method, MethodContext, TrainingData, option, register_method
from tunelab.methods.full import load, save, unchanged
from tunelab.tasks.base import Task

ATTR = "tunelab_setfit"  # the stage's details, kept on the model for describe()


@dataclass
class SetFitOptions:
    # SetFit's own default is 20; on the English reviews' first 300 validation sentences, 8
    # per class, seeds 1-3 (MiniLM): 20 -> 63.0%, 40 -> 66.0%, 80 -> 64.2%
    setfit_pairs: int = option(
        40,
        "setfit: similar pairs drawn per training text (as many dissimilar ones)",
        lambda v: v >= 1,
        "must be >= 1",
    )
    setfit_epochs: float = option(
        1.0,
        "setfit: contrastive training, in passes of 2 x setfit_pairs pairs per text (the "
        "distinct pairs repeated as needed)",
        lambda v: v > 0,
        "must be > 0",
    )
    setfit_learning_rate: float = option(
        2e-5, "setfit: learning rate of the contrastive stage", lambda v: v > 0, "must be > 0"
    )
    setfit_batch_size: int = option(
        16, "setfit: pairs per contrastive batch", lambda v: v >= 2, "must be >= 2"
    )
    setfit_end_to_end: bool = option(
        False, "setfit: the encoder trains with the head after the contrastive stage"
    )


def supports(task: Task) -> bool:
    return task.single_label  # one class per text: pairs are similar or not


def apply(model: torch.nn.Module, options: SetFitOptions, ctx: MethodContext) -> torch.nn.Module:
    # everything trains during the contrastive stage; before_training freezes the encoder after
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def make_pairs(
    ids: list[list[int]], labels: list[int], per_text: int, seed: int
) -> tuple[list[tuple[int, int]], list[int]]:
    """(pairs of indices, targets 1 similar / 0 dissimilar): for each text up to ``per_text``
    partners of its class and as many of other classes, drawn with ``seed``; each unordered
    pair once, no pair of identical texts, then the larger kind cut to the smaller's count,
    and the whole shuffled."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    keys = [tuple(x) for x in ids]
    seen: set[tuple[int, int]] = set()
    similar: list[tuple[int, int]] = []
    dissimilar: list[tuple[int, int]] = []

    def add(i: int, j: int, into: list) -> None:
        key = (min(i, j), max(i, j))
        if i != j and keys[i] != keys[j] and key not in seen:
            seen.add(key)
            into.append(key)

    others_of = {
        c: [j for d, members in by_class.items() if d != c for j in members] for c in by_class
    }
    for i, y in enumerate(labels):
        mine, others = by_class[int(y)], others_of[int(y)]
        for _ in range(per_text):
            if len(mine) > 1:
                add(i, rng.choice(mine), similar)
            if others:
                add(i, rng.choice(others), dissimilar)
    n = min(len(similar), len(dissimilar))
    if n == 0:
        raise DataError(
            "", None, "setfit needs at least two different texts in one class and two classes"
        )
    rng.shuffle(similar)
    rng.shuffle(dissimilar)
    pairs = [(p, 1) for p in similar[:n]] + [(p, 0) for p in dissimilar[:n]]
    rng.shuffle(pairs)
    return [p for p, _ in pairs], [t for _, t in pairs]


def cosine_loss(logits: torch.Tensor, targets: torch.Tensor, scale: float) -> torch.Tensor:
    """SetFit's CosineSimilarityLoss: the squared error between each pair's cosine (the
    diagonal of the pair model's scaled similarity matrix) and its 0/1 target."""
    cos = torch.diagonal(logits.float()) / scale
    return torch.nn.functional.mse_loss(cos, targets.float())


def _contrastive(model: torch.nn.Module, options: SetFitOptions, data: TrainingData) -> dict:
    from tunelab.tasks import sentence_embedding as se
    from tunelab.tasks.pooled_head import encoder

    if data.fit is None:
        raise TypeError("setfit's stage needs TrainingData.fit (the training engine)")
    body = encoder(model)
    pairs, targets = make_pairs(data.ids, data.labels, options.setfit_pairs, data.seed)
    rows = [data.ids[i] + data.ids[j] for i, j in pairs]
    # SetFit shows 2 x setfit_pairs pairs per text; a few texts have fewer distinct pairs
    # (8 per class: 56 similar ones in all), so those are shown again, reshuffled per pass
    wanted = 2 * options.setfit_pairs * len(data.ids) * options.setfit_epochs
    settings = {
        "batch_size": options.setfit_batch_size,
        "learning_rate": options.setfit_learning_rate,
        "epochs": max(options.setfit_epochs, wanted / len(pairs)),
        "warmup_ratio": 0.1,
        "precision": data.precision,
        "seed": data.seed,
    }
    base_class = type(body)
    body.__class__ = se.pair_class(base_class)  # rows of two texts -> their similarities
    t0 = time.perf_counter()
    try:
        steps, loss = data.fit(
            body,
            rows,
            targets,
            data.pad_id,
            lambda logits, t: cosine_loss(logits, t, se.SCALE),
            settings,
            lambda ys: torch.tensor(ys, dtype=torch.float32),
        )
    finally:
        body.__class__ = base_class
    seconds = time.perf_counter() - t0
    data.log(
        f"tunelab: setfit: {len(pairs)} pairs ({len(pairs) // 2} similar), {steps} "
        f"contrastive steps in {seconds:.1f} s, final loss {loss:.4f}"
    )
    return {
        "pairs": len(pairs),
        "similar_pairs": sum(targets),
        "contrastive_steps": steps,
        "contrastive_seconds": round(seconds, 2),
        "contrastive_loss": round(loss, 5),
    }


def embeddings(model: torch.nn.Module, ids: list[list[int]], batch_size: int = 64) -> np.ndarray:
    """The mean-pooled, unit-length embeddings of encoded texts (the head's input)."""
    from tunelab.tasks import sentence_embedding as se
    from tunelab.tasks.pooled_head import encoder

    was = model.training
    model.eval()
    with torch.inference_mode():
        out = se.embed_all(encoder(model), ids, batch_size)
    model.train(was)
    return out


def fit_head(model: torch.nn.Module, ids: list[list[int]], labels: list[int]) -> float:
    """Logistic regression (SetFit's default head, scikit-learn's defaults) on the tuned
    embeddings, copied into the linear head; returns its training accuracy."""
    from sklearn.linear_model import LogisticRegression

    from tunelab.tasks.pooled_head import linear_head

    head = linear_head(model)
    x, y = embeddings(model, ids), np.asarray(labels)
    bias = head.bias is not None
    clf = LogisticRegression(max_iter=1000, fit_intercept=bias).fit(x, y)
    k = head.weight.shape[0]
    coef = np.zeros((k, x.shape[1]), dtype=np.float32)
    inter = np.zeros(k, dtype=np.float32)
    classes = [int(c) for c in clf.classes_]
    if len(classes) == 2:  # one logit: split it over the two classes (softmax is the same)
        coef[classes[0]], coef[classes[1]] = -clf.coef_[0] / 2, clf.coef_[0] / 2
        if bias:
            inter[classes[0]], inter[classes[1]] = -clf.intercept_[0] / 2, clf.intercept_[0] / 2
    else:
        for row, c in enumerate(classes):
            coef[c] = clf.coef_[row]
            if bias:
                inter[c] = clf.intercept_[row]
        # a class the training texts lack keeps a logit far below the others
        for c in set(range(k)) - set(classes):
            inter[c] = -1e4 if bias else 0.0
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(coef).to(head.weight.dtype))
        if bias:
            head.bias.copy_(torch.from_numpy(inter).to(head.bias.dtype))
    return float(clf.score(x, y))


def before_training(model: torch.nn.Module, options: SetFitOptions, data: TrainingData) -> dict:
    from tunelab.tasks.pooled_head import linear_head

    details = _contrastive(model, options, data)
    details["head_train_accuracy"] = round(fit_head(model, data.ids, data.labels), 4)
    if not options.setfit_end_to_end:  # the loop trains the head alone
        head = {id(p) for p in linear_head(model).parameters()}
        for p in model.parameters():
            p.requires_grad_(id(p) in head)
    details["end_to_end"] = options.setfit_end_to_end
    setattr(model, ATTR, details)
    return details


def describe(model: torch.nn.Module) -> dict:
    return dict(getattr(model, ATTR, {}))


METHOD = register_method(
    Method(
        "setfit",
        "few-shot classification (SetFit): the encoder trained contrastively on pairs of the "
        "labelled texts, then a classifier over its mean-pooled embeddings",
        1e-3,
        apply,
        save,
        load,
        options=SetFitOptions,
        supports=supports,
        merge=unchanged,
        describe=describe,
        spec={"pooling": "mean"},
        before_training=before_training,
    )
)
