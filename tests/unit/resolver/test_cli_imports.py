"""Building idnode's command line must not import prometheus_client: it reads
PROMETHEUS_MULTIPROC_DIR once, when first imported, and ``serve --workers N`` sets that only
after parsing its arguments. A command module that imported it early left /metrics empty."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from resolver import cli
cli._parser()
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in ("prometheus_client", "aiohttp"))))
"""


def test_the_parser_imports_neither_prometheus_client_nor_aiohttp() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""
