"""The daemon's HTTP face: one ASGI app (FastAPI) served by uvicorn inside `tfops serve`.

- `app.create_app(routers)` builds the app: a request body cap (413), JSON errors that never
  carry a traceback, OpenAPI at /openapi.json. Each feature brings its own `APIRouter`.
- `slack.slack_router(...)`: `POST /slack/interactions` (Slack's HTTP mode).
- `ui.ui_router(...)`: the read-only status page at `/` (built from the config by `ui_setup`).
- `server.WebServer(app, HttpOptions(...))`: uvicorn on a daemon thread, started and stopped
  by the daemon, which keeps its own signal handlers.

Handlers only verify, parse and hand over; they never run git or Terraform.
"""

from tfops.web.app import create_app
from tfops.web.server import HttpOptions, WebServer, WebServerError, parse_listen
from tfops.web.slack import slack_router

__all__ = ["HttpOptions", "WebServer", "WebServerError", "create_app", "parse_listen", "slack_router"]
