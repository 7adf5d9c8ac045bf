"""Writing files that people share: atomically (readers see the old file or the new one, never half of it) and
with the permissions the umask asks for (a teammate on a shared cluster can read the weights and the metrics)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask can only be read by setting
    it, which would briefly change it for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomically(path: Path, text: str) -> Path:
    """Write to a temporary file beside ``path``, then rename (``write_atomically``)."""
    return write_atomically(path, lambda f: f.write(text.encode()))


def write_atomically(path: Path, write) -> Path:
    """``write(binary file)`` into a temporary file beside ``path``, then rename it over ``path``: readers see the
    old file or the new one, never half of it, and a file hard-linked to the old one keeps its content (the rename
    gives ``path`` a new inode). Beside, not in $TMPDIR: a rename across file systems is a copy into the old file.
    The temporary file is created private (0600); it gets the mode a plain ``open(path, "w")`` would have given it
    before the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def apply_umask(directory: Path) -> None:
    """Give every file under ``directory`` the mode the umask asks for. safetensors writes weights 0600 whatever
    the umask, which would leave an exported model readable by its owner only."""
    mode = 0o666 & ~current_umask()
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


def unwritable(directory: Path) -> str | None:
    """Why files could not be written in ``directory`` (created if missing), or None if they could. Probed, nothing
    left behind: a temporary file in it, or, where it does not exist yet, a temporary directory in its nearest
    existing parent."""
    directory = Path(directory).absolute()
    existing = directory
    # os.path's, not Path's: they say False for a path under a directory one may not search (Path's raise)
    while not os.path.exists(existing) and existing != existing.parent:
        existing = existing.parent
    if not os.path.isdir(existing):
        return f"{existing} is a file, not a directory"
    if existing == directory:
        try:
            fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-check.")
            os.close(fd)
            os.unlink(probe)
        except OSError as err:
            return f"cannot write in {existing} ({err.strerror})"
        return None
    if not os.access(existing, os.W_OK | os.X_OK):  # also for root on a read-only file system
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
        return f"cannot create it: {existing} is {'on a read-only file system' if read_only else 'not writable'}"
    try:  # access() is not the whole story (/sys, /proc, some mounts refuse even root): a directory made and removed
        os.rmdir(tempfile.mkdtemp(dir=existing, prefix=".write-check."))
    except OSError as err:
        return f"cannot create it in {existing} ({err.strerror})"
    return None


def as_seen_from_here(path: Path | str) -> Path:
    """``path`` relative to the working directory where it lies under it, else as it is: a sweep dir reads the same
    in messages whichever launcher ran its jobs (Ray's are made absolute for its workers) as the user gave it."""
    path = Path(path)
    try:
        return path.relative_to(Path.cwd()) if path.is_absolute() else path
    except ValueError:
        return path

