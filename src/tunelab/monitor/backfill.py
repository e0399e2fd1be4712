"""Past one machine: ingest workers side by side, and backfills through Ray Data.

**Live ingestion scales out** by running several ``tunelab monitor`` workers against one
PostgreSQL database (``postgresql+psycopg://...``): each batch commits in one transaction and
``(source, id)`` is stored once, so workers that overlap, retry or replay store nothing twice.

**A large archive** (a JSONL/CSV/TSV/TXT file or a folder of them, the fields of the monitor's
sources) goes through Ray Data instead of a loop of our own::

    from tunelab.monitor.backfill import backfill
    backfill("archive/", "exports/int8", "postgresql+psycopg://host/monitor")

Ray reads the files in parallel (a read task per file, so split a single huge one), each with
the monitor's own parser: ids, sources, times and line-numbered errors are those of ``tunelab
monitor replay``. A pool of actors loads the export once each (``tunelab.load``; an int8 ONNX
export from ``tunelab export`` is the fast one), analyses batches as the live monitor does and
stores each with ``store_posts``: masked, idempotent, committed per batch, so a rerun stores
nothing twice. Without ``address`` a local Ray is started and stopped. On a cluster: ``ray start
--head`` on one node, ``ray start --address HEAD:6379`` on the others (tunelab installed on each,
the archive and the export on a path every node sees), then ``backfill(..., address="auto")``.
The dashboard and reports read the database, so they show backfilled posts; alert rules do not
run here (``tunelab monitor replay`` of the archive raises its alerts).

**Spark** does the same with ``df.mapInPandas`` (the ONNX export loaded once per partition
iterator, ``store_posts`` per batch); it needs a Java runtime, so it is not tested here.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from tunelab.errors import TunelabError
from tunelab.monitor.rules import load_rules
from tunelab.monitor.sources import data_files, read_file
from tunelab.monitor.windows import NEGATIVE
from tunelab.runs import read_run
from tunelab.store.db import open_store

QUIET: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}


def archive_files(archive: str | Path) -> list[str]:
    """The data files of ``archive`` (a file, or a folder searched recursively), sorted."""
    return [str(f.resolve()) for f in data_files(archive, recursive=True)]


def read_posts(row: dict[str, Any], source: str | None = None) -> list[dict[str, Any]]:
    """A Ray read task: the posts of the file ``row["path"]``, parsed and checked as ``tunelab
    monitor replay`` does (``source``: of posts that name none; default: the file's name)."""
    try:
        posts = list(read_file(str(row["path"]), source))
    except TunelabError as e:  # DataError does not unpickle in the driver: its one line does
        raise TunelabError(str(e)) from None
    return [{**vars(p), "time": p.time.isoformat()} for p in posts]  # post_id, text, source


class Analyse:
    """A Ray actor: loads the export once, then analyses and stores each batch it is given."""

    def __init__(self, export_dir: str, database: str, entities: dict[str, list[str]]) -> None:
        import ray
        import torch

        import tunelab
        from tunelab.backends import OnnxModule
        from tunelab.monitor.engine import KeywordEntities

        # the CPUs Ray gave this actor, not the node's count (several actors share a node)
        threads = max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        torch.set_num_threads(threads)
        self.model = tunelab.load(export_dir)
        if isinstance(self.model.model, OnnxModule):  # its session: as many threads, not more
            self.model.model = OnnxModule(self.model.model.path, threads=threads)
        self.keywords = KeywordEntities(entities)
        self.engine = open_store(database)

    def __call__(self, batch: Any) -> Any:  # pandas DataFrames: posts in, counts out
        import pandas as pd

        from tunelab.monitor.engine import sentiment_row
        from tunelab.store.posts import Post, store_posts

        posts = [
            Post(r.post_id, r.text, datetime.fromisoformat(r.time), r.source)
            for r in batch.itertuples()
        ]
        texts = [p.text for p in posts]  # the model reads the text; store_posts masks it
        preds = self.model.predict(texts, batch_size=min(64, len(texts)))
        ents = [self.keywords(t) for t in texts]
        rows = [[sentiment_row(p, e)] for p, e in zip(preds, ents, strict=True)]
        stored = store_posts(self.engine, posts, rows, ents)  # committed: acknowledged
        return pd.DataFrame({"read": [len(posts)], "stored": [len(stored)]})


def backfill(
    archive: str | Path,
    export_dir: str | Path,
    database: str,
    *,
    batch_size: int = 256,
    concurrency: int | None = None,
    source: str | None = None,
    address: str | None = None,
    rules: str | Path | None = None,
) -> dict[str, Any]:
    """Analyse and store every post of ``archive`` with Ray Data.

    Args:
        archive: a JSONL/CSV/TSV/TXT file or a folder of them (posts: id, text, time, source).
        export_dir: a run or export folder (int8 ONNX: fastest without native bf16).
        database: a SQLAlchemy URL or a SQLite file (the monitor's database).
        batch_size: posts analysed and committed together.
        concurrency: analysis actors (one CPU each); default one per CPU of the cluster.
        source: the source of posts that name none (default: their file's name).
        address: a Ray cluster to join (``"auto"``, ``"HOST:6379"``); None starts a local one.
        rules: a rule file whose ``entities`` keyword lists are matched, as the monitor does.
    Returns:
        ``posts`` read, ``stored``, ``duplicates`` (stored before, or twice in the archive),
        ``workers``, ``seconds`` (of the pipeline), ``posts_per_s``, ``ray_startup_s``.
    """
    try:
        import ray.data
    except ImportError:
        raise TunelabError("the backfill needs Ray: pip install 'tunelab[distributed]'") from None

    files = archive_files(archive)
    labels = read_run(Path(export_dir)).labels
    if NEGATIVE not in labels:
        raise TunelabError(f"{export_dir}: its labels ({', '.join(labels)}) have no '{NEGATIVE}'")
    entities = load_rules(rules).entities if rules else {}
    if "://" not in database:  # a SQLite file: the same file from every worker's directory
        database = str(Path(database).expanduser().resolve())
    open_store(database).dispose()  # migrated once here; a bad URL is one line, before Ray
    t0 = time.perf_counter()
    started = not ray.is_initialized()  # else the caller's own Ray: used, and left running
    # token authentication is Ray's default for a new local cluster: kept, and not announced
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
    if started and address is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        ray.init(num_cpus=cpus, include_dashboard=False, **QUIET)
    elif started:
        ray.init(address=address, **QUIET)
    startup = time.perf_counter() - t0
    # Ray Data's progress and errors: to its log file only (a failure comes back raised)
    console = {h: h.level for h in logging.getLogger("ray.data").handlers if h.name == "console"}
    for h in console:
        h.setLevel(logging.CRITICAL)
    ctx = ray.data.DataContext.get_current()
    wrap, ctx.raise_original_map_exception = ctx.raise_original_map_exception, True
    try:
        workers = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
        ds = (
            ray.data.from_items([{"path": f} for f in files], override_num_blocks=len(files))
            # reading takes no CPU slot: the analysis actors may hold all of them
            .flat_map(read_posts, fn_kwargs={"source": source}, num_cpus=0)
            .map_batches(
                Analyse,
                fn_constructor_args=(str(Path(export_dir).resolve()), database, entities),
                batch_size=batch_size,
                batch_format="pandas",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
        )
        read = stored = 0
        t1 = time.perf_counter()
        try:
            for b in ds.iter_batches(batch_format="pandas", batch_size=None):
                read, stored = read + int(b["read"].sum()), stored + int(b["stored"].sum())
        except TunelabError as e:  # a malformed post, a damaged export: its line, not Ray's
            raise TunelabError(str(getattr(e, "cause", None) or e).splitlines()[0]) from None
        seconds = time.perf_counter() - t1
    finally:
        ctx.raise_original_map_exception = wrap
        for h, level in console.items():
            h.setLevel(level)
        if started:
            ray.shutdown()
    rate = round(read / seconds, 1) if seconds else None
    timing = dict(seconds=round(seconds, 2), posts_per_s=rate, ray_startup_s=round(startup, 2))
    return dict(posts=read, stored=stored, duplicates=read - stored, workers=workers, **timing)
