"""The serving part of the web application (``tunelab serve``), and the app made of it.

    GET  /healthz, /readyz, /metrics   the app's (:mod:`tunelab.web.app`); /readyz is 200 once
                                       every model is loaded
    GET  /v1/models                    name, task, labels, method, metrics, backend
    POST /v1/models/{name}/predict     {"inputs": "text" | ["text", ...]}  (question answering:
                                       {"question", "context"} objects)
    POST /v1/models/{name}/reload      re-read the model folder (admin key), no request dropped;
                                       a damaged folder gets 409 and the old model serves on
    POST /v1/functions/{name}          with --functions: analyze_sentiment, classify, ... with
                                       their arguments as a JSON object

With a keys file every ``/v1`` call needs ``Authorization: Bearer <key>``: 401 without a
valid key, 403 for a reload with a user key (reload needs a keys file), 429 past the per-key
rate limit or after too many failed authentications from one address. Errors: see
:mod:`tunelab.web.errors`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel

from tunelab.errors import TunelabError, first_line
from tunelab.runs import read_metrics, read_run
from tunelab.serving.batcher import MicroBatcher
from tunelab.serving.function_routes import add_function_routes
from tunelab.serving.schemas import ModelInfo, PredictResponse, request_model
from tunelab.serving.settings import ServeSettings
from tunelab.tasks import get_task
from tunelab.web import metrics
from tunelab.web.admission import Limits, add_json_route
from tunelab.web.app import Part
from tunelab.web.app import create_app as web_app
from tunelab.web.errors import http_error, invalid, responses
from tunelab.web.guard import mask_personal_data
from tunelab.web.keys import ApiKey, read_keys

if TYPE_CHECKING:
    from tunelab.inference import TunedModel

log = logging.getLogger("tunelab.serve")
# passes per forward: a gathered batch is sorted by length and cut into passes this long, so
# each pass pads little. Measured on 2 cores with 16-text batches of the bundled test split:
# PyTorch 8 (96-106 ex/s) beats 4 (82-90); ONNX Runtime 4 (226) beats 8 (200) and 16 (158)
SUB_BATCH = {"pytorch": 8, "onnxruntime": 4}


class Served:
    """One model: its folder, the loaded model and its batcher."""

    def __init__(self, name: str, folder: str, settings: ServeSettings) -> None:
        self.name, self.folder, self.settings = name, folder, settings
        self.model: TunedModel | None = None  # None until load() finishes
        self.error: str | None = None  # why the first load failed
        self.scores: dict = {}
        self.loaded_at = ""
        self.batcher = MicroBatcher(
            self._predict,
            settings.max_batch_size,
            settings.max_wait_ms / 1000.0,
            on_batch=lambda n: metrics.BATCH.labels(name).observe(n),
        )

    def _predict(self, items: list) -> list:
        assert self.model is not None  # requests reach the batcher only once loaded
        return self.model.predict(items, batch_size=SUB_BATCH[self.engine])

    @property
    def engine(self) -> str:
        assert self.model is not None
        return "onnxruntime" if type(self.model.model).__name__ == "OnnxModule" else "pytorch"

    def load(self) -> None:
        """(Re)load the folder; the swap is one assignment, so the batch in flight finishes
        on the old model and the next one uses the new."""
        import tunelab

        model = tunelab.load(self.folder)
        # read here, once per load, not on every GET /v1/models
        data = read_metrics(self.folder, required=False)
        scores = {
            k: v
            for k, v in (data.get("test") or data.get("validation") or {}).items()
            if isinstance(v, (int, float))
        }
        self.model, self.scores, self.loaded_at = (
            model,
            scores,
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )

    def info(self, full_path: bool = False) -> dict:
        m = self.model
        assert m is not None  # listed only once loaded
        return {
            "name": self.name,
            "task": m.task_name,
            "labels": m.labels,
            "method": m.method,
            "backend": m.backend,  # engine and precision: "pytorch bf16 (cpu)", ...
            "folder": self.folder if full_path else Path(self.folder).name,
            "loaded_at": self.loaded_at,
            "metrics": self.scores,
            "export": m.info.export,
        }


def create_app(settings: ServeSettings, extra: list[Part] | None = None) -> FastAPI:
    """The web application with the serving part for ``settings`` (and ``extra`` parts);
    models load in the background once it starts."""
    _configure_logging()
    keys: list[ApiKey] = read_keys(settings.api_keys_file) if settings.api_keys_file else []
    log.info("limits: %s", settings.describe_limits())
    return web_app(
        [serving_part(settings, keys), *(extra or [])],
        keys,
        limits_of(settings),
        version=_version(),
        description="Predict with fine-tuned tunelab models. With an API keys file, "
        "/v1 calls need `Authorization: Bearer <key>`.",
    )


def limits_of(settings: ServeSettings) -> Limits:
    return Limits.of(
        settings.requests_per_minute(), settings.auth_failure_limit, settings.max_body_bytes
    )


def serving_part(settings: ServeSettings, keys: list[ApiKey]) -> Part:
    """The models of ``settings`` behind ``/v1/models`` (and ``/v1/functions`` with
    ``settings.functions``)."""
    served = {name: Served(name, folder, settings) for name, folder in settings.models.items()}
    state: dict[str, Any] = {"ready": False, "error": None}

    async def load_all() -> None:
        loop = asyncio.get_running_loop()
        failed = []
        for s in served.values():  # one damaged folder does not keep the others down
            try:
                await loop.run_in_executor(None, s.load)
                log.info(
                    "model %s loaded from %s (%s)",
                    s.name,
                    s.folder,
                    getattr(s.model, "backend", "?"),
                )
            except Exception as e:  # reported by /readyz and the model's routes (503)
                s.error = str(e) if isinstance(e, TunelabError) else f"{type(e).__name__}: {e}"
                failed.append(f"{s.name}: {s.error}")
                log.error("model %s failed to load: %s", s.name, s.error)
        if failed:
            state["error"] = "; ".join(failed)
        else:
            state["ready"] = True
        import gc

        gc.collect()
        gc.freeze()  # the models are permanent: full collections no longer scan them
        # (measured: the p99 latency under load fell from ~290 to ~130 ms)

    async def startup() -> None:
        for s in served.values():
            s.batcher.start()
        state["loader"] = asyncio.create_task(load_all())

    async def shutdown() -> None:
        state["loader"].cancel()
        for s in served.values():  # uvicorn has let in-flight requests finish by now
            await s.batcher.close()

    def ready() -> tuple[str, dict]:
        if state["ready"]:
            return "ready", {"models": list(served)}
        return ("loading" if state["error"] is None else "failed"), {"error": state["error"]}

    app = APIRouter()

    def get(name: str) -> Served:
        s = served.get(name)
        if s is None:
            raise http_error(404, f"unknown model {name!r}; served: {', '.join(served)}")
        if s.model is None and s.error is not None:
            raise http_error(503, f"model {name!r} failed to load: {s.error}")
        if s.model is None:
            raise http_error(503, f"model {name!r} is still loading", **{"Retry-After": "1"})
        return s

    @app.get(
        "/v1/models",
        response_model=list[ModelInfo],
        tags=["models"],
        responses=responses(401, 429, 500),
    )
    def list_models(request: Request) -> list[dict]:
        key = getattr(request.state, "key", None)
        admin = bool(key is not None and key.admin)
        return [s.info(full_path=admin) for s in served.values() if s.model is not None]

    async def predict(name: str, body: BaseModel, request: Request) -> Response:
        s = get(name)
        inputs = body.inputs  # type: ignore[attr-defined]  # every request model has inputs
        items = inputs if isinstance(inputs, list) else [inputs]
        _check_inputs(items, s, settings)
        plain = [x.model_dump() if isinstance(x, BaseModel) else x for x in items]
        if not plain:
            return Response(
                json.dumps({"model": name, "predictions": []}), media_type="application/json"
            )
        metrics.QUEUE.labels(name).inc()
        try:
            outs = await s.batcher.submit(plain)
        except Exception as e:  # this request's inputs broke the model (the batcher re-ran
            # the others on their own): its 500, logged in one line
            log.error("predict model=%s failed: %s: %s", name, type(e).__name__, first_line(e))
            raise http_error(
                500,
                f"the model failed on these inputs ({type(e).__name__}); other requests "
                "are unaffected",
            ) from None
        finally:
            metrics.QUEUE.labels(name).dec()
        metrics.TEXTS.labels(name).inc(len(plain))
        if settings.log_requests:
            key = getattr(request.state, "key", None)
            shown = [
                mask_personal_data(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False))[
                    :200
                ]
                for x in plain
            ]
            log.info(
                "predict model=%s key=%s texts=%d %s",
                name,
                key.name if key else "-",
                len(plain),
                json.dumps(shown, ensure_ascii=False),
            )
        # serialised here: the predictions are plain JSON already, so FastAPI's response-model
        # validation (the OpenAPI schema still documents PredictResponse) is skipped
        return Response(
            json.dumps({"model": name, "predictions": outs}, ensure_ascii=False),
            media_type="application/json",
        )

    # one predict operation per served model, its body what that model takes (texts, or
    # {question, context} objects), then a catch-all that answers 404 for any other name
    for name, folder in settings.models.items():
        qa = get_task(read_run(folder).task).read_inputs is not None
        _add_predict(app, name, request_model(qa, settings.max_text_chars), predict)

    # not in the schema: the schema lists exactly the served models
    @app.post("/v1/models/{name}/predict", include_in_schema=False)
    async def unknown_model(name: str) -> None:
        raise http_error(404, f"unknown model {name!r}; served: {', '.join(served) or 'none'}")

    @app.post(
        "/v1/models/{name}/reload",
        response_model=ModelInfo,
        tags=["models"],
        responses=responses(401, 403, 404, 409, 429, 500, 503),
    )
    async def reload(name: str, request: Request) -> dict:
        key = getattr(request.state, "key", None)
        if not keys:
            raise http_error(
                403, "reloading needs an admin key: start the server with --api-keys-file"
            )
        if key is None or not key.admin:
            raise http_error(403, "reloading a model needs an admin key")
        s = served.get(name)
        if s is None or (s.model is None and s.error is None):
            s = get(name)  # 404, or 503 while the first load runs
        try:
            await asyncio.get_running_loop().run_in_executor(None, s.load)
        except TunelabError as e:  # a damaged folder: the model loaded before serves on
            log.warning("reload of model %s refused: %s", name, e)
            kept = f" (still serving the model loaded at {s.loaded_at})" if s.model else ""
            raise http_error(409, f"{e}{kept}") from None
        log.info("model %s reloaded from %s", name, s.folder)
        if s.error is not None:  # it failed at start-up and loads now
            s.error = None
            state["ready"] = all(x.model is not None for x in served.values())
            state["error"] = None if state["ready"] else state["error"]
        return s.info(full_path=True)

    if settings.functions:
        add_function_routes(app, settings)
    return Part("serving", app, startup, shutdown, ready, models=served)


def _add_predict(app: APIRouter, name: str, body_model: type[BaseModel], predict) -> None:
    async def endpoint(body, request: Request) -> Response:
        return await predict(name, body, request)

    add_json_route(
        app,
        f"/v1/models/{name}/predict",
        endpoint,
        body_model,
        with_request=True,
        response_model=PredictResponse,
        tags=["models"],
        responses=responses(400, 401, 413, 415, 429, 500, 503),
        summary=f"Predict with {name}",
        operation_id=f"predict_{name}",
    )


def _check_inputs(items: list, s: Served, settings: ServeSettings) -> None:
    if len(items) > settings.max_texts:
        raise http_error(
            413, f"{len(items)} inputs in one request; the limit is {settings.max_texts}"
        )
    assert s.model is not None  # get() answered 503 while loading
    qa = s.model.task.read_inputs is not None  # inputs are {question, context} objects
    for i, x in enumerate(items):
        loc = ("body", "inputs", i) if len(items) > 1 else ("body", "inputs")
        if qa != isinstance(x, BaseModel):  # a reloaded folder may hold another task
            need = "{question, context} objects" if qa else "texts (strings)"
            raise invalid(loc, f"model {s.name!r} ({s.model.task_name}) takes {need}")


def _configure_logging() -> None:
    """Our lines on stderr next to uvicorn's, once per process."""
    if not log.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(levelname)s:     tunelab: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def _version() -> str:
    from tunelab import __version__

    return __version__


def app_from_env() -> FastAPI:
    """uvicorn's factory in every worker process: settings come from the environment."""
    settings = ServeSettings.from_env()
    extra = []
    if settings.assistants:
        from tunelab.assistant.web import assistant_part

        extra.append(assistant_part(settings.assistants, settings.tickets))
    if settings.music:
        from tunelab.music.web import music_part

        extra.append(music_part(settings.music))
    return create_app(settings, extra)
