"""HTTP Basic credentials as handle.net's REST API takes them."""

from __future__ import annotations

import base64
from urllib.parse import quote


def basic_credentials(identity: str, secret: str) -> str:
    """The Authorization header: the identity percent-encoded, its ':' as %3A (``300%3A0.NA/88.118``)."""
    user = quote(identity, safe="/").replace(":", "%3A")
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()
