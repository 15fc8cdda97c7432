"""download_pennfudan against a local HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from pedseg_lib.data import download_pennfudan, make_synthetic_pennfudan
from pedseg_lib.errors import DownloadError


def _build_zip(tmp: Path, extra: dict[str, bytes] | None = None) -> tuple[bytes, Path]:
    src = make_synthetic_pennfudan(tmp / "src" / "PennFudanPed", n_images=2, seed=1)
    buf = io.BytesIO()
    lines = []
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                rel = p.relative_to(src).as_posix()
                zf.write(p, f"PennFudanPed/{rel}")
                lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{rel}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    manifest = tmp / "manifest.sha256"
    manifest.write_text("\n".join(lines) + "\n")
    return buf.getvalue(), manifest


class _Server:
    def __init__(self, body: bytes, length: int | None = None):
        outer = self
        self.requests = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(length if length is not None else len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/PennFudanPed.zip"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes, length: int | None = None) -> _Server:
        servers.append(_Server(body, length))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_success_and_idempotent(tmp_path, serve):
    body, manifest = _build_zip(tmp_path)
    server = serve(body)
    root = tmp_path / "data"
    out = download_pennfudan(root, url=server.url, sha256=hashlib.sha256(body).hexdigest(), manifest=manifest, progress=False)
    assert out == root / "PennFudanPed" and len(list((out / "PNGImages").glob("*.png"))) == 2
    assert server.requests == 1
    assert download_pennfudan(root, url=server.url, manifest=manifest, progress=False) == out
    assert server.requests == 1
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_wrong_sha256(tmp_path, serve):
    body, manifest = _build_zip(tmp_path)
    server = serve(body)
    with pytest.raises(DownloadError, match="sha256"):
        download_pennfudan(tmp_path / "data", url=server.url, sha256="0" * 64, manifest=manifest, progress=False)
    assert not (tmp_path / "data" / "PennFudanPed").exists()


def test_truncated_body(tmp_path, serve):
    body, manifest = _build_zip(tmp_path)
    server = serve(body, length=len(body) + 1000)
    with pytest.raises(DownloadError, match="incomplete|interrupted"):
        download_pennfudan(tmp_path / "data", url=server.url, manifest=manifest, progress=False)
    assert not (tmp_path / "data" / "PennFudanPed").exists()


def test_manifest_mismatch(tmp_path, serve):
    body, manifest = _build_zip(tmp_path)
    manifest.write_text(manifest.read_text() + f"{'1' * 64}  ./PNGImages/Missing.png\n")
    server = serve(body)
    with pytest.raises(DownloadError, match="wrong sha256"):
        download_pennfudan(tmp_path / "data", url=server.url, manifest=manifest, progress=False)


def test_zip_slip(tmp_path, serve):
    body, manifest = _build_zip(tmp_path, extra={"../evil.txt": b"x"})
    server = serve(body)
    with pytest.raises(DownloadError, match="outside"):
        download_pennfudan(tmp_path / "data", url=server.url, manifest=manifest, progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_offline_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/PennFudanPed.zip"
    with pytest.raises(DownloadError, match="by hand.*PEDSEG_PROFILE=smoke"):
        download_pennfudan(tmp_path / "data", url=url, progress=False, timeout=5)
