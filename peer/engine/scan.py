"""A full walk of the synced folder through the FileSystem seam: path → what ``lstat`` says.

Skipped: our own files (``.drift/``, temp files), paths the ignore rules exclude, symlinks (never
followed; recorded as skipped) and special files. Unreadable directories are reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peer.fs import FileInfo, FileKind, FileSystem, FsError
from peer.local.ignore import IgnoreRules, always_ignored


@dataclass
class ScanResult:
    entries: dict[str, FileInfo] = field(default_factory=dict)  # disk path → info
    skipped: dict[str, str] = field(default_factory=dict)  # disk path → why it is not synced
    unreadable: dict[str, str] = field(default_factory=dict)  # directory → error


def scan_folder(fs: FileSystem, ignore: IgnoreRules) -> ScanResult:
    result = ScanResult()
    stack = [""]
    while stack:
        folder = stack.pop()
        try:
            listing = fs.list_dir(folder)
        except FsError as exc:
            result.unreadable[folder or "."] = str(exc)
            continue
        for info in listing:
            path = f"{folder}/{info.name}" if folder else info.name
            is_dir = info.kind is FileKind.DIR
            if always_ignored(path) or ignore.matches(path, is_dir):
                continue
            if info.kind is FileKind.SYMLINK:
                result.skipped[path] = "symbolic links are not synced"
                continue
            if info.kind is FileKind.OTHER:
                result.skipped[path] = "special files (fifos, sockets, devices) are not synced"
                continue
            result.entries[path] = info
            if is_dir:
                stack.append(path)
    return result
