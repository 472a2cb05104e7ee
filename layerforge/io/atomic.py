"""Writes that never leave a half-written file: temp file in the same folder, fsync, rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def _default_mode(directory: bool) -> int:
    """What a plain open()/mkdir() would give (mkstemp/mkdtemp make owner-only files)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` or leave ``path`` as it was; OSErrors name ``path`` itself."""
    import errno

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else _default_mode(False))
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


MARKER = ".layerforge-partial"  # inside a temporary run folder while it is written: "<host> <pid>"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def _dead_owner(folder: Path) -> bool:
    """Whether ``folder`` is a temporary run folder whose writer, on this host, no longer runs."""
    import socket

    try:
        host, pid = (folder / MARKER).read_text().split()
        return host == socket.gethostname() and not _alive(int(pid))
    except (OSError, ValueError):
        pass
    # Killed between creating the folder and writing its marker: nothing in it but (part of) the marker. The pid
    # in the name (``.<run>.<pid>-*.tmp``) is the writer's; an empty folder is harmless to remove either way.
    import re

    m = re.fullmatch(r"\..+\.(\d+)-[^.]+\.tmp", folder.name)
    try:
        contents = [p.name for p in folder.iterdir()]
    except OSError:
        return False
    return bool(m) and set(contents) <= {MARKER} and not _alive(int(m.group(1)))


def clean_stale(parent: str | Path) -> list[Path]:
    """Remove what saves killed midway (SIGKILL, power loss) left in ``parent``: temporary run folders
    (``.<run>.<pid>-*.tmp`` with the marker) of processes that are gone, and the previous copy a finished
    swap did not get to delete (``.<run>.old-<pid>``, only when ``<run>`` itself is in place; otherwise the copy
    is put back). Returns the folders removed. Never touches anything without these exact names."""
    import re

    parent = Path(parent)
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(".") or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if name.endswith(".tmp") and _dead_owner(path):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            continue
        m = re.fullmatch(r"\.(.+)\.old-(\d+)", name)
        if m and not _alive(int(m.group(2))):
            final = parent / m.group(1)
            if final.exists():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            else:
                os.replace(path, final)
    return removed


@contextmanager
def atomic_directory(final: str | Path):
    """Yield a temporary sibling folder; on success it replaces ``final`` in one rename.

    If ``final`` exists it is moved aside first and removed only after the new one is in
    place, so an interrupted save leaves the previous directory loadable. Leftovers of saves whose
    process was killed are cleaned from the parent first (``clean_stale``)."""
    import socket

    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.{os.getpid()}-", suffix=".tmp", dir=final.parent))
    os.chmod(tmp, _default_mode(True))
    (tmp / MARKER).write_text(f"{socket.gethostname()} {os.getpid()}\n")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    # the marker goes only once the folder is in place: a save killed before that leaves a marked, cleanable folder
    (final / MARKER).unlink(missing_ok=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
