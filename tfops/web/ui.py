"""The read-only status page: every stack, run and drift, served by the daemon's HTTP server.

    GET  /                   every stack (?state=drifted|failed|awaiting_approval&q=TEXT&page=N)
    GET  /stacks/{name}      a stack's runs (?page=N), drift incidents, applied commits, durations
    GET  /runs/{id}          a run: timeline, plan by action, drift before → after, decisions, log tail
    GET  /runs/{id}/log      the run's whole (redacted) log, text/plain
    GET  /login, POST /login, POST /logout   the session cookie (tfops/web/ui_auth.py)
    GET  /ui/static/{file}   the CSS and the live script, shipped in the package
    GET  /ui/changes         {"mark": ...}: changes whenever a run, stack or incident does

Pages are rendered on the server (Jinja2, autoescaped) and work without JavaScript; `live.js`
polls `/ui/changes` and, when the mark moves, fetches the page again and swaps its `[data-live]`
regions. Nothing here writes: the only forms are the login and the logout.

What is shown is what the store holds, which is redacted, plus commit subjects and authors from
the clone; free texts and the run log go through the API's `scrub` (host paths). A run log is read
only from under the data directory.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape

from tfops.models import Stack, StackState
from tfops.store import ui_queries
from tfops.store.store import Store
from tfops.views import Scrub, unchanged
from tfops.web import ui_views as views
from tfops.web.ui_auth import COOKIE, NotAllowed, UiAccess, Viewer, login_location, safe_next, wants_html
from tfops.web.ui_charts import durations_chart, run_bars, trouble_chart
from tfops.web.ui_commits import CommitLookup

log = logging.getLogger(__name__)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
MAX_RUN_ID = 2**63 - 1
LOG_TAIL_BYTES = 64 * 1024
LOG_MAX_BYTES = 16 * 1024 * 1024  # the whole-log route sends at most this much (the end of it)
CHART_DAYS = 14
_STATIC = {"ui.css": "text/css; charset=utf-8", "live.js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class UiContext:
    """What the page's handlers read."""

    store: Store
    stacks: Callable[[], Mapping[str, Stack]]
    access: UiAccess
    commits: CommitLookup
    data_dir: Path
    next_check: Callable[[str], datetime | None] = lambda name: None
    scrub: Scrub = unchanged
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def attach(self, request: Request) -> None:
        request.state.tfops_ui = self


def _context(request: Request) -> UiContext:
    context: UiContext = request.state.tfops_ui
    return context


Ui = Annotated[UiContext, Depends(_context)]


def _viewer(request: Request, ui: Ui) -> Viewer:
    """Who reads; a browser that may not is sent to the login page, a script gets 401 or 403."""
    try:
        return ui.access.viewer(request)
    except NotAllowed as refused:
        client = request.client.host if request.client else "unknown"
        log.info("status page refused %s %s from %s: %s", request.method, request.url.path, client,
                 refused.reason)  # fmt: skip
        raise Answer(_refusal(request, refused)) from None


def _refusal(request: Request, refused: NotAllowed) -> Response:
    browser = wants_html(request)
    if refused.status == 401 and browser and "authorization" not in request.headers:
        return RedirectResponse(login_location(request), status_code=303, headers=SECURITY_HEADERS)
    headers = dict(SECURITY_HEADERS)
    if refused.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="tfops"'
    if browser:
        return render("refused.html", refused.status, reason=refused.reason, title=None, headers=headers)
    return JSONResponse({"detail": refused.reason}, status_code=refused.status, headers=headers)


def _not_found(request: Request, what: str) -> Response:
    if wants_html(request):
        return render("refused.html", 404, reason=what, title="Not found")
    return JSONResponse({"detail": what}, status_code=404, headers=SECURITY_HEADERS)


class Answer(Exception):
    """Raised by a dependency to answer with `response` instead of running the page's handler."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class _PageRoute(APIRoute):
    """A route whose dependencies may answer for it (`Answer`): an HTML refusal, not FastAPI's JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except Answer as given:
                return given.response

        return answer


Reader = Annotated[Viewer, Depends(_viewer)]

# --------------------------------------------------------------------------- rendering

_templates = Environment(
    loader=PackageLoader("tfops.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    template: str, status: int = 200, *, headers: Mapping[str, str] = SECURITY_HEADERS, **values: Any
) -> HTMLResponse:
    """A page with the security headers; every value escaped by the template."""
    now = values.setdefault("now", datetime.now(UTC))
    values.setdefault("viewer", None)
    values.setdefault("mark", None)
    html = _templates.get_template(template).render(
        ago=lambda at: views.ago(at, now), duration=views.duration, **values
    )
    return HTMLResponse(html, status_code=status, headers=headers)


# --------------------------------------------------------------------------- the pages


def overview_page(
    request: Request,
    ui: Ui,
    viewer: Reader,
    state: Annotated[str | None, Query(max_length=40)] = None,
    q: Annotated[str, Query(max_length=200)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    now = ui.clock()
    mark = ui_queries.change_mark(ui.store)  # read first: a change while rendering shows next time
    found = ui_queries.stack_overview(ui.store)  # two queries, any number of stacks
    incidents = {incident.stack: incident for incident in ui.store.open_incidents()}
    rows = views.stack_rows(found, ui.stacks(), incidents, ui.next_check)
    shown = views.overview(rows, state=state, query=q, page=page)
    shown_rows = views.with_commits(shown.rows, ui.commits.commit, ui.commits.behind)
    chart = trouble_chart(ui_queries.trouble_by_day(ui.store, days=CHART_DAYS, now=now))
    return render(
        "overview.html",
        view=shown,
        rows=shown_rows,
        chart=chart,
        viewer=viewer,
        now=now,
        filters=views.FILTERS,
        mark=mark,
    )


def stack_page(
    request: Request, name: str, ui: Ui, viewer: Reader, page: Annotated[int, Query(ge=1, le=100_000)] = 1
) -> HTMLResponse:
    mark = ui_queries.change_mark(ui.store)
    stack = ui.stacks().get(name)
    state = ui.store.get_stack(name)
    if state is None and stack is not None:
        state = StackState(name, stack.path)  # configured; the poller has not recorded it yet
    if state is None:
        raise Answer(_not_found(request, f"no stack named {name!r}"))
    runs = ui_queries.stack_runs(ui.store, name, page=page)
    finished = list(reversed(ui_queries.finished_runs(ui.store, name)))  # oldest first
    applied = ui_queries.applied_runs(ui.store, name)
    return render(
        "stack.html",
        state=state,
        stack=stack,
        runs=runs,
        incidents=ui_queries.stack_incidents(ui.store, name),
        applied=[(run, ui.commits.commit(run.commit_sha)) for run in applied],
        chart=durations_chart(run_bars(finished)),
        next_check=ui.next_check(name) if stack is not None else None,
        viewer=viewer,
        now=ui.clock(),
        mark=mark,
    )


def run_page(request: Request, run_id: int, ui: Ui, viewer: Reader) -> HTMLResponse:
    mark = ui_queries.change_mark(ui.store)
    run = _run_or_404(request, ui, run_id)
    commit = ui.commits.commit(run.commit_sha)
    incident = ui.store.incident_of_run(run.stack, run.id)
    return render(
        "run.html",
        run=run,
        commit=commit,
        trigger_note=ui.scrub(run.trigger.note),
        error=views.scrubbed_error(run, ui.scrub),
        events=views.timeline(ui.store.events(run.id), ui.scrub),
        decisions=views.decision_lines(ui.store.decisions(run.id)),
        plan=views.plan_view(run.summary),
        incident=incident,
        log_tail=views.log_tail(_read_log(ui, run.log_path, LOG_TAIL_BYTES)),
        viewer=viewer,
        now=ui.clock(),
        mark=mark,
    )


def run_log(request: Request, run_id: int, ui: Ui, viewer: Reader) -> PlainTextResponse:
    run = _run_or_404(request, ui, run_id)
    return PlainTextResponse(_read_log(ui, run.log_path, LOG_MAX_BYTES), headers=SECURITY_HEADERS)


def changes(ui: Ui, viewer: Reader) -> JSONResponse:
    return JSONResponse({"mark": ui_queries.change_mark(ui.store)}, headers=SECURITY_HEADERS)


def _run_or_404(request: Request, ui: UiContext, run_id: int) -> Any:
    run = ui.store.get_run(run_id) if 1 <= run_id <= MAX_RUN_ID else None
    if run is None:
        raise Answer(_not_found(request, f"no run {run_id}"))
    return run


def _read_log(ui: UiContext, log_path: str | None, limit: int) -> str:
    """The end of a run's log (redacted when written), host paths scrubbed; "" when there is none.

    Only a file under the data directory is read: the path comes from the store, and the page
    must never become a way to read other files."""
    if not log_path:
        return ""
    path = Path(log_path)
    try:
        resolved = path.resolve(strict=True)
        if not resolved.is_relative_to(ui.data_dir.resolve()):
            log.warning("status page: not reading a run log outside the data directory: %s", path)
            return ""
        with resolved.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - limit))
            data = handle.read(limit)
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if len(data) == limit and size > limit:
        text = text.partition("\n")[2]  # the first line was cut: start at a whole one
    return views.hide_program_paths(ui.scrub(text))


# --------------------------------------------------------------------------- login, logout, assets


def login_form(request: Request, ui: Ui, next: Annotated[str, Query(max_length=2000)] = "/") -> HTMLResponse:
    return render("login.html", next=safe_next(next), error=None, has_tokens=ui.access.has_tokens)


async def login(request: Request, ui: Ui) -> Response:
    body = await request.body()
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except ValueError:
        fields = {}
    presented = (fields.get("token") or [""])[0].strip()
    target = safe_next((fields.get("next") or ["/"])[0])
    token = ui.access.token(presented) if presented else None
    if token is None:
        client = request.client.host if request.client else "unknown"
        log.warning("status page: failed login from %s", client)
        error = "That token is not one of tfops' API tokens."
        return render("login.html", 401, next=target, error=error, has_tokens=ui.access.has_tokens)
    response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(
        COOKIE,
        ui.access.issue(token),
        max_age=int(ui.access.ttl),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    log.info("status page: %s logged in", token.name)
    return response


def logout() -> Response:
    response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


def static_file(name: str) -> Response:
    media = _STATIC.get(name)
    if media is None:
        raise HTTPException(404, detail="no such file")
    data = resources.files("tfops.web").joinpath("static", name).read_bytes()
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(data, media_type=media, headers=headers)


# --------------------------------------------------------------------------- the router


def ui_router(context: UiContext) -> APIRouter:
    """The page's routes; every one but the login, the logout and the assets needs a viewer."""
    router = APIRouter(
        tags=["ui"], include_in_schema=False, dependencies=[Depends(context.attach)], route_class=_PageRoute
    )
    router.add_api_route("/", overview_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/stacks/{name}", stack_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/runs/{run_id}", run_page, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/runs/{run_id}/log", run_log, methods=["GET"], response_class=PlainTextResponse)
    router.add_api_route("/ui/changes", changes, methods=["GET"])
    router.add_api_route("/login", login_form, methods=["GET"], response_class=HTMLResponse)
    router.add_api_route("/login", login, methods=["POST"])
    router.add_api_route("/logout", logout, methods=["POST"])
    router.add_api_route("/ui/static/{name}", static_file, methods=["GET"])
    return router
