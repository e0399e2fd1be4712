"""The page shell every part's pages share: one Jinja2 environment over the parts' template
folders and ours (``base.html`` with the header, the navigation and the language switch;
``login.html``), one stylesheet and Chart.js served from ``/static/web`` (no CDN, no internet),
and the sign-in routes.

With API keys, a visitor signs in once (``/login``) and carries a session cookie; the CSRF token
for changes is in each page's ``<meta name="csrf">``. The navigation lists every part's pages
(``Part.nav``), so the studio shows the monitor's dashboard when both are served together.

    GET /            -> the first page of the navigation
    GET, POST /login;  POST /logout
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlparse

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from tunelab.web import i18n, sessions
from tunelab.web.errors import http_error
from tunelab.web.keys import match

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"


class Pages:
    """Templates from the parts' folders first, then the shell's; the navigation as
    ``(i18n key, path)`` pairs; the brand's i18n key."""

    def __init__(
        self, folders: list[Path], nav: list[tuple[str, str]], brand: str = "studio"
    ) -> None:
        loaders = [FileSystemLoader(f) for f in [*folders, TEMPLATES]]
        self.env = Environment(loader=ChoiceLoader(loaders), autoescape=select_autoescape())
        self.nav = nav
        self.brand = brand

    @property
    def home(self) -> str:
        return self.nav[0][1] if self.nav else "/healthz"


def lang_of(request: Request) -> str:
    return i18n.pick(
        request.query_params.get("lang"),
        request.cookies.get(i18n.COOKIE),
        request.headers.get("accept-language"),
    )


def render(request: Request, template: str, **context) -> HTMLResponse:
    """``template`` in the page language, with the shell's context (words, CSRF token,
    navigation, whether signed in)."""
    pages: Pages = request.app.state.pages
    lang = lang_of(request)
    sess = request.app.state.sessions
    session = sess.get(request.cookies.get(sessions.COOKIE)) if sess is not None else None
    html = pages.env.get_template(template).render(
        lang=lang,
        t=i18n.strings(lang),
        csrf=session.csrf if session is not None else "",
        signed_in=session is not None,
        path=request.url.path,
        nav=pages.nav,
        brand=pages.brand,
        **context,
    )
    response = HTMLResponse(html)
    if request.query_params.get("lang") in i18n.LANGS:
        response.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="strict")
    return response


def shell_router() -> APIRouter:
    r = APIRouter(include_in_schema=False)

    @r.get("/")
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(request.app.state.pages.home, status_code=303)

    @r.get("/login")
    def login_page(request: Request, next: str = "") -> Response:
        return render(request, "login.html", page="login", next=_local(request, next), bad=False)

    @r.post("/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        nxt = _local(request, (form.get("next") or [""])[0])
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


def _local(request: Request, url: str) -> str:
    """Only a path on this site (no open redirect); else the first page."""
    u = urlparse(url)
    if u.scheme or u.netloc or not url.startswith("/") or url.startswith("//"):
        return str(request.app.state.pages.home)
    return url
