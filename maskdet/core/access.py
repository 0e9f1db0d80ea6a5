"""Who may use the dashboard: it listens on this machine only unless told otherwise, and beyond it a password
(MASKDET_PASSWORD) is asked of every browser session. A session that gave it hands its browser a one-use ticket, which
the browser trades for a pass cookie: files the dashboard serves by URL (downloads, videos) go only to a browser with
a valid pass, so a URL copied from a log or a screenshot fetches nothing.

    python -m maskdet.core.access ADDRESS    # exit 2 with a sentence when the dashboard must not listen there
"""

import hmac
import ipaddress
import secrets
import sys
import threading
import time

from maskdet.core.settings import load_settings


def is_local(address: str) -> bool:
    """Whether listening on `address` keeps the dashboard on this machine."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def listen_problem(address: str, password: str | None) -> str | None:
    """Why the dashboard must not listen on `address` (None: it may)."""
    if is_local(address) or password:
        return None
    return (f"Not listening on {address} without a password: anyone who reaches the port could delete classes and "
            "runs. Set MASKDET_PASSWORD (every browser then signs in with it), or keep the default 127.0.0.1 and "
            "reach the dashboard through an SSH tunnel.")


def password_matches(given: str, password: str) -> bool:
    return hmac.compare_digest(given.encode(), password.encode())


PASS_COOKIE = "maskdet_pass"
PASS_SECONDS = 12 * 3600  # a browser signs in again after this, or when the dashboard restarts
TICKET_SECONDS = 60  # time for a page's browser to trade its ticket for the pass
_SECRET = secrets.token_bytes(32)  # this process's own: passes die with it
_tickets: dict[str, float] = {}  # ticket -> when it expires
_tickets_lock = threading.Lock()  # tickets are made in script threads and redeemed on the server's event loop


def new_ticket(now: float | None = None) -> str:
    """A one-use ticket for a signed-in session's browser, good for TICKET_SECONDS."""
    now = time.time() if now is None else now
    ticket = secrets.token_urlsafe(24)
    with _tickets_lock:
        for old in [old for old, until in _tickets.items() if until < now]:
            del _tickets[old]
        _tickets[ticket] = now + TICKET_SECONDS
    return ticket


def redeem_ticket(ticket: str, now: float | None = None) -> bool:
    """Whether the ticket was issued, is in time and unused; it is used up either way."""
    with _tickets_lock:
        until = _tickets.pop(ticket, None)
    return until is not None and (time.time() if now is None else now) <= until


def _signature(until: int, password: str) -> str:
    return hmac.new(_SECRET + password.encode(), str(until).encode(), "sha256").hexdigest()


def new_pass(password: str, now: float | None = None) -> str:
    """The pass cookie's value: when it ends, signed with this process's secret and the password."""
    until = int((time.time() if now is None else now) + PASS_SECONDS)
    return f"{until}.{_signature(until, password)}"


def pass_is_valid(value: str | None, password: str, now: float | None = None) -> bool:
    """Whether `value` is a pass this process issued for this password and it has not ended."""
    if not isinstance(value, str):
        return False
    until, _, signature = value.partition(".")
    if not until.isdigit():
        return False
    return (time.time() if now is None else now) < int(until) and hmac.compare_digest(
        signature, _signature(int(until), password))


if __name__ == "__main__":
    try:
        problem = listen_problem(sys.argv[1], load_settings().password)
    except ValueError as error:  # a setting that cannot be read: say so before the dashboard starts
        problem = str(error)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
