"""Settings read from environment variables, with the defaults documented in the README."""

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LABELS = ("with_mask", "without_mask")


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    home: Path
    models_dir: Path
    database_url: str
    backbone_weights: Path | None
    max_pixels: int
    ice_servers: str = "[]"  # JSON list of RTCIceServer dicts for the Live page; empty = localhost/LAN only
    password: str | None = None  # MASKDET_PASSWORD: the dashboard asks every browser session for it
    live_streams: int = 2  # MASKDET_LIVE_STREAMS: camera streams served at once (default: one per core)
    cluster: str | None = None  # MASKDET_CLUSTER: a Dask scheduler's address (tcp://HOST:8786) to train on; None: here


def load_settings() -> Settings:
    """Build the settings from MASKDET_* environment variables."""
    home = Path(os.environ.get("MASKDET_HOME", "data")).resolve()
    weights = os.environ.get("MASKDET_BACKBONE_WEIGHTS")
    return Settings(
        home=home,
        models_dir=Path(os.environ.get("MASKDET_MODELS", "models")).resolve(),
        database_url=os.environ.get("MASKDET_DATABASE_URL", f"sqlite:///{home / 'maskdet.db'}"),
        backbone_weights=Path(weights) if weights else None,
        max_pixels=positive_int("MASKDET_MAX_PIXELS", 40_000_000),
        ice_servers=os.environ.get("MASKDET_ICE_SERVERS", "[]"),
        password=os.environ.get("MASKDET_PASSWORD") or None,
        live_streams=positive_int("MASKDET_LIVE_STREAMS", usable_cores()),
        cluster=os.environ.get("MASKDET_CLUSTER", "").strip() or None,
    )


def positive_int(name: str, default: int) -> int:
    """An environment variable holding a whole number of at least 1 (default when unset)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} must be a whole number of at least 1, not {text!r}.")
    return int(text)
