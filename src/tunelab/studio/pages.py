"""The studio's pages: server-rendered shells (Jinja2, on the web application's page shell:
``tunelab.web.pages``) that the small ``static/studio.js`` fills from the JSON API, with Chart.js
for the curves; every asset is served by us, so the page loads with no internet.

    GET /studio/data, /studio/train, /studio/runs, /studio/try, /studio/export, /studio/chat,
        /studio/jobs/{id}
    GET /studio/runs/{name}/report   the run's report.html
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from tunelab.web.errors import http_error
from tunelab.web.pages import render

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
PAGES = ("data", "train", "runs", "try", "export", "chat")
NAV = [(f"nav.{p}", f"/studio/{p}") for p in PAGES]


def pages_router(runs_dir: str | Path) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    runs = Path(runs_dir)

    @r.get("/studio/{page}")
    def page(page: str, request: Request) -> Response:
        if page not in PAGES:
            raise http_error(404, f"no page {page!r}")
        return render(request, f"{page}.html", page=page)

    @r.get("/studio/jobs/{jid}")
    def job(jid: str, request: Request) -> Response:
        return render(request, "job.html", page="runs", job_id=jid)

    @r.get("/studio/runs/{name}/report")
    def report(name: str) -> FileResponse:
        from tunelab.runs import is_run
        from tunelab.studio.forms import RUN_NAME

        f = runs / name / "report.html"
        if not RUN_NAME.match(name) or not is_run(runs / name) or not f.is_file():
            raise http_error(404, f"no report for run {name!r}")
        return FileResponse(f, media_type="text/html")

    return r
