"""Atomic file writes: a killed process, or another node writing the same path, never leaves half a file.

Every writer of the library goes through ``write_atomically``: the content goes to a temporary name
unique to this write (so two processes on a shared filesystem never write one temp file), then a
rename puts it in place.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable


def write_atomically(path: str | Path, write: Callable[[str], None]) -> Path:
    """Create ``path`` through ``write(temporary name)`` and a rename. The file gets the usual
    permissions (0666 less the umask; a mkstemp file would be 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        write(str(tmp))
        os.chmod(tmp, mode)  # some writers (safetensors >= 0.8) replace the file with a 0600 one
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2))


__all__ = ["write_atomically", "write_json_atomic", "write_text_atomic"]
