"""Download files once, verify them by SHA-256, and keep them in a cache folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

CACHE_ENV = "SCJEPA_DATA_DIR"


def cache_dir(path: str | os.PathLike | None = None) -> Path:
    """The data cache: ``path``, else ``$SCJEPA_DATA_DIR``, else ``~/.cache/scjepa``."""
    chosen = path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "scjepa"
    chosen = Path(chosen)
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen


def sha256sum(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(
    url: str,
    file_name: str,
    sha256: str | None = None,
    directory: str | os.PathLike | None = None,
    timeout: float = 60.0,
) -> Path:
    """Return the path of a cached copy of ``url``, downloading and verifying it if needed.

    The download goes to a temporary file that is moved into place only once complete and
    verified, so an interrupted download never leaves a corrupt cache entry. When no ``sha256``
    is given, the digest of the first download is recorded next to the file and every later use
    is checked against it.

    Parameters
    ----------
    url
        Address of the file.
    file_name
        Name of the file in the cache.
    sha256
        Expected hex digest; a mismatch raises ``ValueError`` and removes the download.
    directory
        Cache folder (see :func:`cache_dir`).
    timeout
        Seconds to wait for the server.
    """
    folder = cache_dir(directory)
    target = folder / file_name
    recorded = target.with_name(target.name + ".sha256")
    expected = sha256 or (recorded.read_text().strip() if recorded.exists() else None)
    if target.exists():
        _verify(target, expected, remove=False)
        return target
    with tempfile.NamedTemporaryFile(dir=folder, delete=False, suffix=".part") as partial:
        partial_path = Path(partial.name)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=file_name) as bar:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        partial.write(chunk)
                        bar.update(len(chunk))
        except Exception:
            partial_path.unlink(missing_ok=True)
            raise
    _verify(partial_path, sha256, remove=True)
    shutil.move(partial_path, target)
    recorded.write_text(sha256 or sha256sum(target))
    return target


def _verify(path: Path, expected: str | None, remove: bool) -> None:
    if expected is None:
        return
    actual = sha256sum(path)
    if actual != expected.lower():
        if remove:
            path.unlink(missing_ok=True)
        raise ValueError(
            f"Checksum mismatch for {path.name}: expected sha256 {expected}, got {actual}. "
            "The file is corrupt or has changed upstream; delete it from the cache to download "
            "it again."
        )
