"""The studio's pages: server-rendered shells (Jinja2) that the small ``static/studio.js`` fills
from the JSON API, with Chart.js for the curves; every asset is served by us, so the page loads
with no internet. With API keys, a visitor signs in once (``/login``) and carries a session
cookie; the CSRF token for changes is in each page's ``<meta name="csrf">``.

    GET /                        -> /studio/data
    GET /studio/data, /studio/train, /studio/runs, /studio/try, /studio/export, /studio/chat,
        /studio/jobs/{id}
    GET /studio/runs/{name}/report   the run's report.html
    GET, POST /login;  POST /logout
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from tunelab.web import i18n, sessions
from tunelab.web.errors import http_error
from tunelab.web.keys import match

HERE = Path(__file__).parent
STATIC = HERE / "static"
PAGES = ("data", "train", "runs", "try", "export", "chat")
_env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape())


def _lang(request: Request) -> str:
    return i18n.pick(
        request.query_params.get("lang"),
        request.cookies.get(i18n.COOKIE),
        request.headers.get("accept-language"),
    )


def render(request: Request, template: str, **context) -> HTMLResponse:
    lang = _lang(request)
    sess = request.app.state.sessions
    session = sess.get(request.cookies.get(sessions.COOKIE)) if sess is not None else None
    html = _env.get_template(template).render(
        lang=lang,
        t=i18n.strings(lang),
        csrf=session.csrf if session is not None else "",
        signed_in=session is not None,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html)
    if request.query_params.get("lang") in i18n.LANGS:
        response.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="strict")
    return response


def pages_router(runs_dir: str | Path) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    runs = Path(runs_dir)

    @r.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse("/studio/data", status_code=303)

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

    @r.get("/login")
    def login_page(request: Request, next: str = "/studio/data") -> Response:
        return render(request, "login.html", page="login", next=_local(next), bad=False)

    @r.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        nxt = _local((form.get("next") or ["/studio/data"])[0])
        keys, store = request.app.state.keys, request.app.state.sessions
        limiter = request.app.state.auth_failures
        addr = f"addr:{request.client.host if request.client else '-'}"
        if limiter is not None and limiter.peek(addr) > 0:
            raise http_error(429, "too many failed sign-ins from this address; wait a minute")
        found = match(keys, key) if keys and key else None
        if found is None or store is None:
            if limiter is not None:
                limiter.check(addr)
            page = render(request, "login.html", page="login", next=nxt, bad=True)
            page.status_code = 401
            return page
        sid, _ = store.open(found)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(sessions.COOKIE, sid, httponly=True, samesite="strict", path="/")
        return resp

    @r.post("/logout")
    def logout(request: Request) -> RedirectResponse:
        store = request.app.state.sessions
        if store is not None:
            store.close(request.cookies.get(sessions.COOKIE))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(sessions.COOKIE, path="/")
        return resp

    return r


def _local(url: str) -> str:
    """Only a path on this site (no open redirect)."""
    u = urlparse(url)
    if u.scheme or u.netloc or not url.startswith("/") or url.startswith("//"):
        return "/studio/data"
    return url
