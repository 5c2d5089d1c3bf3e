"""Whether datasets can come from the HF hub now: offline mode, and a quick reachability probe
(so a run without network fails at once with a hint instead of retrying for minutes)."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

_TRUE = ("1", "on", "yes", "true")


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set (only cached copies are used)."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def hub_reachable(timeout: float = 5.0) -> bool:
    """Whether the HF hub endpoint answers a TCP connection within `timeout` seconds."""
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True
