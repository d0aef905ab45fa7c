"""nginx (Debian package, one worker) serving one JSON file for every GET /api/handles/{h}.

The same body and headers as idnode's cached answer, from a file: the ceiling of what a
static server does with this response on this machine::

    python -m bench.nginx_app --listen 127.0.0.1:8003 --body-file body.json
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resolver.http.common import CORS


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def config(root: Path, host: str, port: int) -> str:
    headers = "".join(f'        add_header {k} "{v}" always;\n' for k, v in CORS.items())
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server_tokens off;
    keepalive_requests 1000000;
    server {{
        listen {host}:{port} backlog=1024;
        root {root};
        location /api/handles/ {{
            types {{ }}
            default_type application/json;
{headers}            try_files /body.json =404;
        }}
    }}
}}
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.nginx_app", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0 picks a free one)")
    parser.add_argument("--body-file", type=Path, required=True)
    args = parser.parse_args(argv)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    host, _, port_text = args.listen.rpartition(":")
    port = int(port_text) or _free_port(host)
    with tempfile.TemporaryDirectory(prefix="idnode-nginx-") as work:
        root = Path(work)
        (root / "tmp").mkdir()
        shutil.copy(args.body_file, root / "body.json")
        (root / "nginx.conf").write_text(config(root, host, port))
        proc = subprocess.Popen([nginx, "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")])
        for _ in range(100):
            try:
                socket.create_connection((host, port), timeout=0.1).close()
                break
            except OSError:
                if proc.poll() is not None:
                    print((root / "error.log").read_text(), file=sys.stderr)
                    return 1
                time.sleep(0.05)
        print(f"nginx: listening on http://{host}:{port}", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        signal.signal(signal.SIGINT, lambda *_: proc.terminate())
        return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
