"""Is the Hugging Face Hub reachable? One quick check, so an offline machine fails in seconds instead of retrying.

Uses huggingface_hub's own settings and HTTP session: HF_HUB_OFFLINE=1 means offline without a probe, HF_ENDPOINT names
the Hub (a mirror too), and the session honours the user's proxy settings (HTTPS_PROXY / HTTP_PROXY / NO_PROXY), so a
machine that reaches the Hub only through a proxy is online. huggingface_hub is imported when the check runs.
"""
import os

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.utils import get_session


def hub_offline_mode():
    """True when the user switched the Hub off: HF_HUB_OFFLINE as huggingface_hub read it at import, or as the
    environment says now (a notebook may set it after importing)."""
    now = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "on", "yes", "true")
    return now or huggingface_hub.is_offline_mode()


def hub_reachable(timeout=3.0):
    """True when the Hub answers an HTTP request within timeout seconds (any HTTP status: it answered); False when
    offline mode is on, or when the request fails (no network, DNS, proxy refusal, time-out)."""
    if hub_offline_mode():
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout, follow_redirects=False)
        return True
    except Exception:  # every transport failure (httpx / requests errors, OSError) means: not reachable
        return False
