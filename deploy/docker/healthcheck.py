"""The container's health: GET /healthz on the node's own listener; exit 0 when it answers 200.

Reads the listener from the node's settings in the environment (IDNODE_LISTEN, IDNODE_TLS_CERT),
so it follows whatever the image or compose file configures. Uses only the standard library:
the slim image has no curl.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.error
import urllib.request

TIMEOUT = 4.0


def health_url(env: dict[str, str]) -> str:
    host, _, port = env.get("IDNODE_LISTEN", "127.0.0.1:8000").rpartition(":")
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    scheme = "https" if env.get("IDNODE_TLS_CERT") else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}/healthz"


def main() -> int:
    url = health_url(dict(os.environ))
    # The certificate names the public host, not 127.0.0.1: this checks the node, not its certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as reply:
            return 0 if reply.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
