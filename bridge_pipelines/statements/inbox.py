"""The statement inbox: a folder where banks drop statement files (an object store or SFTP drop later).

A file is taken when it is complete: dotfiles and temporary names are ignored (banks, and our example bank, write
under a temporary name and rename). Each complete file is registered once (by name, size and modification time);
its content hash decides whether it is new or an identical re-send. Symlinks, oversize files and anything that is
not a regular file directly in the inbox are refused: moved to quarantine/ with a reason file, never read.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psycopg

from bridge_pipelines.db.locks import advisory_lock, advisory_lock_free

TEMPORARY_NAME = re.compile(r"(^\.|~$|\.(tmp|temp|part|partial|crdownload|filepart|swp)$)", re.IGNORECASE)
QUARANTINE_DIR = "quarantine"
MAX_FILES_PER_SCAN = 200
# How many bytes one scan hashes at most (a file is hashed whole to be registered), so that a sensor tick stays well
# under a second when a day's statements arrive at once: the eleven 110 MB files of a 10,000,000-payment cycle took
# 0.98 s in one tick. At least one file is registered per scan, whatever its size; the rest wait for the next scan.
MAX_BYTES_PER_SCAN = 256 * 1024 * 1024


@dataclass(frozen=True)
class InboxFile:
    name: str
    size: int
    mtime_ns: int
    is_symlink: bool


@dataclass(frozen=True)
class Registration:
    registration_id: int
    file_name: str
    status: str  # NEW | DUPLICATE | REFUSED
    statement_id: str | None
    sha256: str | None
    detail: str


def statement_id_for(sha256: str) -> str:
    """The statement partition key: stable for a content, short enough to read in the UI."""
    return "S" + sha256[:19].upper()


def list_inbox(inbox: Path) -> list[InboxFile]:
    """Complete candidate files directly in the inbox, oldest first."""
    if not inbox.is_dir():
        return []
    found = []
    with os.scandir(inbox) as entries:
        for entry in entries:
            if TEMPORARY_NAME.search(entry.name):
                continue
            info = entry.stat(follow_symlinks=False)
            is_link = stat.S_ISLNK(info.st_mode)
            if not is_link and not stat.S_ISREG(info.st_mode):
                continue  # directories (quarantine/) and special files
            found.append(InboxFile(entry.name, info.st_size, info.st_mtime_ns, is_link))
    return sorted(found, key=lambda f: (f.mtime_ns, f.name))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_inbox_path(inbox: Path, file_name: str, *, follow_symlink: bool = True) -> Path:
    """The path of `file_name` inside the inbox; refuses names that would escape it. With follow_symlink=False the
    entry itself is meant (a symlink being moved to quarantine), not what it points to."""
    if not file_name or "/" in file_name or "\\" in file_name or file_name in (".", "..") or "\x00" in file_name:
        raise ValueError(f"refused file name {file_name!r}: it must be a plain name inside the inbox")
    path = inbox / file_name
    resolved = path.resolve() if follow_symlink else path.parent.resolve() / path.name
    if resolved.parent != inbox.resolve():
        raise ValueError(f"refused file name {file_name!r}: it resolves outside the inbox")
    return path


def quarantine(inbox: Path, file_name: str, reason: str) -> Path:
    """Move a file (or a symlink itself, never its target) to quarantine/ and write <name>.reason.txt beside it."""
    target_dir = inbox / QUARANTINE_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    source = safe_inbox_path(inbox, file_name, follow_symlink=False)
    target = target_dir / file_name
    counter = 1
    while target.exists() or target.is_symlink():
        target = target_dir / f"{file_name}.{counter}"
        counter += 1
    if source.exists() or source.is_symlink():
        os.rename(source, target)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (target_dir / (target.name + ".reason.txt")).write_text(f"{stamp}\n{reason}\n", encoding="utf-8")
    return target


def register_new_files(conn: psycopg.Connection, inbox: Path, max_bytes: int, limit: int = MAX_FILES_PER_SCAN,
                       byte_budget: int | None = None) -> list[Registration]:
    """Register files not seen before, oldest first: at most `limit` files and `byte_budget` bytes of them
    (MAX_BYTES_PER_SCAN when None), but at least one file. Returns what was registered (NEW ones need an import
    run)."""
    budget = MAX_BYTES_PER_SCAN if byte_budget is None else byte_budget
    files = list_inbox(inbox)
    if not files:
        return []
    names = [f.name for f in files]
    known = {(name, size, mtime) for name, size, mtime in conn.execute(
        "SELECT file_name, file_size, file_mtime_ns FROM bridge.inbox_file WHERE file_name = ANY(%s)", (names,))}
    registrations: list[Registration] = []
    scanned = 0
    for item in files:
        if (item.name, item.size, item.mtime_ns) in known:
            continue
        if len(registrations) >= limit or (registrations and scanned + item.size > budget):
            break
        registrations.append(_register(conn, inbox, item, max_bytes))
        scanned += item.size
    return registrations


def _register(conn: psycopg.Connection, inbox: Path, item: InboxFile, max_bytes: int) -> Registration:
    refusal = None
    if item.is_symlink:
        refusal = "SYMLINK_REFUSED: symbolic links are not read from the inbox"
    elif item.size > max_bytes:
        refusal = f"FILE_TOO_LARGE: {item.size} bytes, the limit is {max_bytes} (BRIDGE_STATEMENT_MAX_BYTES)"
    if refusal:
        quarantine(inbox, item.name, refusal)
        return _insert(conn, item, "REFUSED", None, None, refusal)
    sha = sha256_of(inbox / item.name)
    earlier = conn.execute(
        """SELECT f.statement_id, f.file_name, s.statement_process_status FROM bridge.inbox_file f
           LEFT JOIN bridge.account_statement s USING (statement_id)
           WHERE f.file_sha256 = %s AND f.statement_id IS NOT NULL ORDER BY f.inbox_file_id DESC LIMIT 1""",
        (sha,)).fetchone()
    if earlier and earlier[2] == "ERROR":
        # the same bytes were quarantined before: an operator fixed the cause (say, configured the account) and
        # dropped the file again, so it is imported again under the same statement id
        return _insert(conn, item, "NEW", earlier[0], sha,
                       f"re-import of {earlier[1]} (statement {earlier[0]}), which was quarantined")
    if earlier:
        detail = f"identical to {earlier[1]} (statement {earlier[0]}): already imported, nothing to do"
        return _insert(conn, item, "DUPLICATE", None, sha, detail)
    return _insert(conn, item, "NEW", statement_id_for(sha), sha, "new statement file")


def _insert(conn: psycopg.Connection, item: InboxFile, status: str, statement_id: str | None, sha: str | None,
            detail: str) -> Registration:
    row = conn.execute(
        """INSERT INTO bridge.inbox_file (file_name, file_size, file_mtime_ns, file_sha256, statement_id,
                                          inbox_status, detail)
           VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (file_name, file_size, file_mtime_ns) DO NOTHING
           RETURNING inbox_file_id""",
        (item.name, item.size, item.mtime_ns, sha, statement_id, status, detail)).fetchone()
    return Registration(row[0] if row else 0, item.name, status, statement_id, sha, detail)


def file_of_statement(conn: psycopg.Connection, statement_id: str) -> tuple[str, str] | None:
    """(file name, sha256) of the file registered last for a statement partition."""
    return conn.execute(
        "SELECT file_name, file_sha256 FROM bridge.inbox_file WHERE statement_id = %s "
        "ORDER BY inbox_file_id DESC LIMIT 1",
        (statement_id,)).fetchone()


def copy_into_inbox(inbox: Path, file_name: str, data: bytes) -> Path:
    """Write a file into the inbox atomically (temporary dotfile, fsync, rename), as a bank should."""
    inbox.mkdir(parents=True, exist_ok=True)
    target = safe_inbox_path(inbox, file_name)
    temp = inbox / f".{file_name}.tmp"
    with open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, target)
    return target




STATEMENT_LOCK_CLASS = 7312

# Statements registered as new whose import or reconciliation has not finished (ERROR is finished: quarantined).
UNFINISHED_SQL = """
SELECT f.statement_id, f.file_sha256, f.file_name
FROM bridge.inbox_file f
LEFT JOIN bridge.account_statement s USING (statement_id)
WHERE f.statement_id IS NOT NULL AND f.inbox_status IN ('NEW', 'IMPORTED')
  AND coalesce(s.statement_process_status, 'RECEIVED') IN ('RECEIVED', 'PARSED')
ORDER BY f.inbox_file_id
LIMIT 200
"""


def statement_lock(conn: psycopg.Connection, statement_id: str):
    """Held while a step works on a statement: a process that dies releases it, so the sensor can tell."""
    return advisory_lock(conn, STATEMENT_LOCK_CLASS, statement_id)


def statement_lock_free(conn: psycopg.Connection, statement_id: str) -> bool:
    return advisory_lock_free(conn, STATEMENT_LOCK_CLASS, statement_id)


def unfinished_statements(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """(statement_id, sha256, file name) of registered statements not yet reconciled (nor quarantined)."""
    return conn.execute(UNFINISHED_SQL).fetchall()
