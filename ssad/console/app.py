"""The console's web app (Starlette): pages rendered with jinja2, a JSON API they poll for live updates, and the
feedback actions, all behind `ssad.console.auth.Access`."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ssad.console.actions import Actions
from ssad.console.auth import Access
from ssad.core.errors import SsadError
from ssad.history import History, queries

__all__ = ["SPANS", "create_app"]

HERE = Path(__file__).parent
#: the trend's spans (seconds), as the page offers them
SPANS = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0}
TREND_POINTS = 400


def _clock(t: float | None) -> str:
    """A time as the page shows it: UTC, to the second."""
    if t is None:
        return ""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _hz(low: float, high: float) -> str:
    from ssad.explain.explanation import format_hz

    return format_hz(low, high)


def create_app(history: History, detector: str | Path, access: Access, *, silent_after: float = 60.0,
               poll_seconds: float = 5.0, allowed_hosts: list[str] | None = None) -> Starlette:
    """The console over `history`, whose buttons update the detector saved in `detector`; pages poll for news every
    `poll_seconds`. With `allowed_hosts`, requests naming another host are refused (DNS rebinding)."""
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["clock"] = _clock
    templates.env.filters["hz"] = _hz
    actions = Actions(history, detector)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, {"csrf": access.csrf, "spans": list(SPANS),
                                                     "poll_ms": round(poll_seconds * 1000), **context},
                                          status_code=status)

    def login_page(request: Request, wrong: bool = False) -> Response:
        return page(request, "login.html", 401, wrong=wrong, csrf="")

    def denied() -> Response:
        return JSONResponse({"error": "log in: /?token=... in a browser, or the header Authorization: Bearer ..."},
                            status_code=401)

    def index(request: Request) -> Response:
        given = request.query_params.get("token")
        if given is not None:
            if not access.is_token(given):
                return login_page(request, wrong=True)
            return access.log_in(RedirectResponse("/", status_code=303), secure=request.url.scheme == "https")
        if access.how(request) is None:
            return login_page(request)
        machines = queries.machines(history, time.time(), silent_after=silent_after)
        machines.sort(key=lambda m: (queries.STATES.index(m["state"]), m["name"]))  # alarms first
        counts = {state: sum(m["state"] == state for m in machines) for state in queries.STATES}
        return page(request, "index.html", machines=machines, counts=counts, alarms=queries.alarms(history, limit=20),
                    version=actions.version())

    def machine_page(request: Request) -> Response:
        if access.how(request) is None:
            return login_page(request)
        name = request.path_params["name"]
        known = {m["name"]: m for m in queries.machines(history, time.time(), silent_after=silent_after)}
        if name not in known:
            return page(request, "missing.html", 404, name=name)
        return page(request, "machine.html", machine=known[name], alarms=queries.alarms(history, name, limit=50),
                    events=queries.events(history, name, limit=30), versions=actions.versions(name),
                    version=actions.version())

    def api_machines(request: Request) -> Response:
        if access.how(request) is None:
            return denied()
        return JSONResponse({"now": time.time(), "version": actions.version(),
                             "machines": queries.machines(history, time.time(), silent_after=silent_after)})

    def api_trend(request: Request) -> Response:
        if access.how(request) is None:
            return denied()
        span = SPANS.get(request.query_params.get("span", "day"))
        machine = request.query_params.get("machine", "")
        if span is None:
            return JSONResponse({"error": f"span is one of {', '.join(SPANS)}"}, status_code=400)
        until = float(request.query_params.get("until", time.time()))
        points = queries.trend(history, machine, until - span, until, points=TREND_POINTS)
        return JSONResponse({"machine": machine, "since": until - span, "until": until, "points": points})

    def api_alarms(request: Request) -> Response:
        if access.how(request) is None:
            return denied()
        machine = request.query_params.get("machine") or None
        after = int(request.query_params.get("after", 0))
        found = queries.alarms(history, machine, limit=20, after=after)
        if request.query_params.get("format") == "html":
            return page(request, "alarms.html", alarms=found)
        return JSONResponse({"alarms": found})

    def picture(request: Request) -> Response:
        if access.how(request) is None:
            return denied()
        png = queries.alarm_picture(history, request.path_params["alarm"])
        if png is None:
            return Response(status_code=404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=86400"})

    def change(request: Request, action: Any) -> Response:
        if not access.may_change(request):
            return JSONResponse({"error": "not allowed: log in, and send the page's CSRF token"}, status_code=403)
        try:
            return JSONResponse(action())
        except (SsadError, ValueError, FileNotFoundError) as error:
            return JSONResponse({"error": str(error)}, status_code=409)

    def label(request: Request) -> Response:
        alarm, verdict = request.path_params["alarm"], request.path_params["label"]
        return change(request, lambda: actions.label(alarm, verdict))

    def undo(request: Request) -> Response:
        return change(request, lambda: actions.undo(request.path_params["name"]))

    def logout(request: Request) -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie("ssad_console", path="/")
        return response

    routes = [
        Route("/", index), Route("/machine/{name:path}", machine_page), Route("/logout", logout),
        Route("/api/machines", api_machines), Route("/api/trend", api_trend), Route("/api/alarms", api_alarms),
        Route("/alarm/{alarm:int}/picture.png", picture),
        Route("/api/alarm/{alarm:int}/{label:str}", label, methods=["POST"]),
        Route("/api/undo/{name:path}", undo, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes)
    if allowed_hosts:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    app.add_middleware(_Headers)
    return app


class _Headers:
    """Security headers on every response: no framing, no sniffing, scripts and images from this server only."""

    POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                headers += [(b"content-security-policy", self.POLICY.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY")]
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, sending)
