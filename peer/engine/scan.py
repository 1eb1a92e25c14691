"""A full walk of the synced folder through the FileSystem seam: path → what ``lstat`` says.

Skipped: our own files (``.drift/``, temp files), paths the ignore rules exclude, symlinks (never
followed; recorded as skipped) and special files. Unreadable directories are reported, not fatal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peer.fs import FileInfo, FileKind, FileSystem, FsError, is_temp_name
from peer.local.ignore import IgnoreRules, always_ignored


@dataclass
class ScanResult:
    entries: dict[str, FileInfo] = field(default_factory=dict)  # disk path → info
    skipped: dict[str, str] = field(default_factory=dict)  # disk path → why it is not synced
    unreadable: dict[str, str] = field(default_factory=dict)  # directory → error
    leftovers: list[str] = field(default_factory=list)  # temp files of an interrupted write


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
            if is_temp_name(info.name) and info.kind is FileKind.FILE:
                result.leftovers.append(path)
                continue
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
