"""HTTP Basic credentials as handle.net's REST API takes them."""

from __future__ import annotations

import base64
from urllib.parse import quote


def basic_user(identity: str) -> str:
    """The user part of Basic credentials: the identity percent-encoded, its ':' as %3A (``300%3A0.NA/88.118``)."""
    return quote(identity, safe="/").replace(":", "%3A")


def basic_credentials(identity: str, secret: str) -> str:
    """The Authorization header for ``identity`` (``basic_user``) and ``secret``."""
    return "Basic " + base64.b64encode(f"{basic_user(identity)}:{secret}".encode()).decode()
