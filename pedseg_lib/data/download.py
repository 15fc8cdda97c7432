"""Download Penn-Fudan, verify it file by file against the bundled SHA-256 list, and unpack it atomically."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from pedseg_lib.errors import DatasetError, DownloadError

PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
MANIFEST_PATH = Path(__file__).with_name("pennfudan.sha256")  # bundled: the SHA-256 of every file of the release


def _read_manifest(path: Path) -> dict[str, str]:
    entries = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise DatasetError(f"{path}:{number}: expected '<sha256>  <path>', got {line!r}")
        entries[parts[1].strip().removeprefix("./")] = parts[0].lower()
    return entries


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_manifest(folder: Path, manifest: Path = MANIFEST_PATH) -> list[str]:
    """Relative paths listed in ``manifest`` that are missing from ``folder`` or have a wrong hash."""
    bad = []
    for rel, digest in _read_manifest(manifest).items():
        p = folder / rel
        if not p.is_file() or _sha256(p) != digest:
            bad.append(rel)
    return bad


def download_pennfudan(
    root: str | Path,
    url: str = PENNFUDAN_URL,
    sha256: str | None = None,
    manifest: str | Path | None = MANIFEST_PATH,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download and extract Penn-Fudan into ``root/PennFudanPed`` (nothing happens if it is complete).

    Args:
        root: parent folder; the dataset lands in ``root/PennFudanPed``.
        url: the zip's address.
        sha256: expected sha256 of the zip, when known.
        manifest: per-file checksum list the extracted files must match (None skips the check).
        timeout: socket timeout in seconds.
        progress: show a tqdm progress bar.

    Returns:
        ``root/PennFudanPed``.

    Raises:
        DownloadError: offline, truncated download, checksum mismatch or unsafe archive.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    target = root / "PennFudanPed"
    manifest = Path(manifest) if manifest is not None else None
    if target.is_dir() and (manifest is None or not verify_manifest(target, manifest)):
        if (target / "PNGImages").is_dir():
            return target
    root.mkdir(parents=True, exist_ok=True)
    hint = f"download {url} by hand and unzip it into {root}, or use PEDSEG_PROFILE=smoke for synthetic data"
    fd, tmp_name = tempfile.mkstemp(prefix=".PennFudanPed-", suffix=".zip.part", dir=root)
    tmp_zip = Path(tmp_name)
    try:
        with open(fd, "wb") as out:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                raise DownloadError(f"cannot reach {url} ({getattr(e, 'reason', e)}); {hint}") from None
            with response:
                expected = int(response.headers.get("Content-Length") or 0) or None
                received = 0
                with tqdm(total=expected, unit="B", unit_scale=True, desc="PennFudanPed.zip", disable=not progress) as bar:
                    while True:
                        try:
                            chunk = response.read(1 << 16)
                        except (OSError, ValueError, http.client.HTTPException) as e:
                            raise DownloadError(f"download of {url} interrupted after {received} bytes ({e}); {hint}") from None
                        if not chunk:
                            break
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        if expected is not None and received != expected:
            raise DownloadError(f"download of {url} incomplete: {received} of {expected} bytes; retry, or {hint}")
        if sha256 is not None and _sha256(tmp_zip) != sha256.lower():
            raise DownloadError(f"{url}: sha256 of the zip does not match {sha256}; retry, or {hint}")
        _extract(tmp_zip, root, target, manifest, url)
    finally:
        tmp_zip.unlink(missing_ok=True)
    return target


def _extract(zip_path: Path, root: Path, target: Path, manifest: Path | None, url: str) -> None:
    """Extract into a temporary folder beside ``target``, verify, then rename into place."""
    staging = Path(tempfile.mkdtemp(prefix=".PennFudanPed-extract-", dir=root))
    try:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                base = staging.resolve()
                for member in zf.namelist():
                    dest = (staging / member).resolve()
                    if member.startswith(("/", "\\")) or ".." in Path(member).parts or not dest.is_relative_to(base):
                        raise DownloadError(f"{url}: archive member {member!r} would land outside {root}; refusing to extract")
                zf.extractall(staging)
        except zipfile.BadZipFile as e:
            raise DownloadError(f"{url}: not a valid zip ({e}); retry the download") from None
        extracted = staging / "PennFudanPed"
        if not (extracted / "PNGImages").is_dir():
            raise DownloadError(f"{url}: the zip has no PennFudanPed/PNGImages folder; is it the Penn-Fudan zip?")
        if manifest is not None:
            bad = verify_manifest(extracted, manifest)
            if bad:
                raise DownloadError(
                    f"{url}: {len(bad)} extracted files missing or with a wrong sha256 (first: {bad[0]}); retry the download"
                )
        if target.exists():
            shutil.rmtree(target)  # an incomplete earlier copy
        extracted.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
