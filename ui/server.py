"""The dashboard's server: Streamlit's own, plus the route where a signed-in browser trades its ticket for the pass
cookie, and a guard that serves Streamlit's media files (downloads, videos) only to a browser holding a valid pass
when a password is set. Streamlit's media route answers anyone who has a file's URL; this closes it. `app.py` builds
the server from `server_options()`, and `streamlit run app.py` finds it there."""

import streamlit as st
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from maskdet.core.access import PASS_COOKIE, PASS_SECONDS, new_pass, pass_is_valid, redeem_ticket
from maskdet.core.settings import load_settings

PASS_PATH = "api/maskdet/pass"  # below the dashboard's base URL path


def base_path() -> str:
    """The dashboard's base URL path, "" or "/name"."""
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}" if base else ""


def dashboard_password() -> str | None:
    """The password; an unreadable setting counts as one nobody can give (every page then shows the setting's error)."""
    try:
        return load_settings().password
    except ValueError:
        return ""


class MediaGuard:
    """ASGI middleware: with a password set, Streamlit's media files go only to a browser holding a valid pass."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith(f"{base_path()}/media/"):
            password = dashboard_password()
            given = Request(scope).cookies.get(PASS_COOKIE)
            if password is not None and not (password and pass_is_valid(given, password)):
                await PlainTextResponse("Sign in to the dashboard first.", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def trade_ticket(request: Request) -> Response:
    """A signed-in page's browser gives its one-use ticket and gets the pass cookie."""
    password = dashboard_password()
    if not password or not redeem_ticket(request.query_params.get("ticket", "")):
        return PlainTextResponse("This ticket is not valid: sign in again.", status_code=403)
    response = Response(status_code=204)
    response.set_cookie(PASS_COOKIE, new_pass(password), max_age=PASS_SECONDS, path=f"{base_path()}/",
                        httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


def server_options() -> dict:
    """st.App's routes and middleware for the dashboard."""
    return {"routes": [Route(f"{base_path()}/{PASS_PATH}", trade_ticket)], "middleware": [Middleware(MediaGuard)]}
