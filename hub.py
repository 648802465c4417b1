"""Is the Hugging Face Hub reachable? One quick check, so an offline machine fails in seconds instead of retrying.
And a saved model folder pushed to a Hub repo (main.py --push-to-hub REPO_ID --model-dir DIR).

Uses huggingface_hub's own settings and HTTP session: HF_HUB_OFFLINE=1 means offline without a probe, HF_ENDPOINT names
the Hub (a mirror too), and the session honours the user's proxy settings (HTTPS_PROXY / HTTP_PROXY / NO_PROXY), so a
machine that reaches the Hub only through a proxy is online. huggingface_hub is imported when the check runs.
"""
import os

import huggingface_hub
from huggingface_hub import constants
from huggingface_hub.utils import get_session

from errors import ProjectError


class HubUnreachable(ProjectError, ConnectionError):
    """The Hugging Face Hub cannot be reached from here; nothing was sent."""


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


def push_folder(folder, repo_id, private=False):
    """Upload a saved model folder to the Hub model repo repo_id (created when missing; the token of
    `huggingface-cli login` or HF_TOKEN); returns the repo's URL. HubUnreachable, having changed nothing, where the
    Hub is not reachable."""
    if not hub_reachable():
        raise HubUnreachable(f"--push-to-hub {repo_id}: the Hugging Face Hub is not reachable from here (offline, "
                             "HF_HUB_OFFLINE=1, or a proxy needed: HTTPS_PROXY / HF_ENDPOINT); nothing was uploaded. "
                             f"Push from a machine that reaches it, or upload {folder} by hand")
    api = huggingface_hub.HfApi()
    url = api.create_repo(repo_id, repo_type="model", exist_ok=True, private=private)
    api.upload_folder(folder_path=os.fspath(folder), repo_id=repo_id, repo_type="model",
                      commit_message="Upload a multi-task sentence transformer")
    return str(url)
