"""Who may use the dashboard: it listens on this machine only unless told otherwise, and beyond it a password
(MASKDET_PASSWORD) is asked of every browser session.

    python -m maskdet.core.access ADDRESS    # exit 2 with a sentence when the dashboard must not listen there
"""

import hmac
import ipaddress
import sys

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


if __name__ == "__main__":
    try:
        problem = listen_problem(sys.argv[1], load_settings().password)
    except ValueError as error:  # a setting that cannot be read: say so before the dashboard starts
        problem = str(error)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
