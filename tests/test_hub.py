"""The Hub check follows huggingface_hub's settings: offline mode, the endpoint, and the user's proxy."""
import http.server
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROBE = "import hub, time; t = time.time(); print(hub.hub_reachable(), round(time.time() - t, 1))"


class _AnsweringProxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy on loopback that answers every request itself (the Hub 'reached' through it)."""
    seen = []

    def do_HEAD(self):
        self.seen.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def probe(**env):
    base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and k != "HF_HUB_OFFLINE"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    reachable, seconds = out.stdout.split()
    return reachable == "True", float(seconds)


@pytest.fixture
def proxy():
    server = http.server.HTTPServer(("127.0.0.1", 0), _AnsweringProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _AnsweringProxy.seen.clear()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_hub_reached_through_the_users_proxy(proxy):
    # an endpoint no resolver knows: only the proxy can answer for it (as behind a corporate proxy)
    endpoint = "http://hub.invalid"
    assert probe(HF_ENDPOINT=endpoint, HTTP_PROXY=proxy, HTTPS_PROXY=proxy)[0]
    assert _AnsweringProxy.seen and _AnsweringProxy.seen[0].startswith(endpoint)
    reachable, seconds = probe(HF_ENDPOINT=endpoint)  # no proxy: unreachable, and said within seconds
    assert not reachable and seconds < 10


def test_offline_mode_means_unreachable_without_a_request(proxy):
    reachable, _ = probe(HF_ENDPOINT="http://hub.invalid", HTTP_PROXY=proxy, HF_HUB_OFFLINE="1")
    assert not reachable and not _AnsweringProxy.seen


def test_offline_mode_set_after_import_is_honoured(monkeypatch):
    import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.time()
    assert not hub.hub_reachable()
    assert time.time() - start < 1
