"""The replicated folder tree at scale: build, size, load, projection, small updates, renames.

    python -m benchmarks.crdt            # 10k and 100k files
    python -m benchmarks.crdt --smoke    # a few hundred files, for make test

A tree of N files in folders of 100 (30 folders per top folder) is built by one replica in one
update (a first scan), saved, and loaded again by a second replica. Figures at 100k files carry the
names of ``benchmarks/targets.toml`` ``[crdt.*]``; the 10k figures carry a ``_10k`` suffix.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Bench, own_peak_rss_bytes, python_cmd
from crdt.identity import ReplicaIdentity
from crdt.persist import load, save
from crdt.tree import FileContent, FolderTree
from crdt.ydoc import YDoc

WRITER = ReplicaIdentity(b"\x11" * 32, b"writer-install-1")
READER = ReplicaIdentity(b"\x22" * 32, b"reader-install-1")
NOW_MS = 1_700_000_000_000


def tree_items(n_files: int) -> list[tuple[str, FileContent | None]]:
    items: list[tuple[str, FileContent | None]] = []
    for d in range(max(1, n_files // 100)):
        folder = f"top{d // 30}/sub{d}"
        items.append((folder, None))
        for f in range(min(100, n_files)):
            manifest = (d * 100 + f).to_bytes(8, "big") * 4  # a 32-byte block id
            items.append((f"{folder}/file{f}.dat", FileContent(manifest, 4096 + f, NOW_MS)))
    return items


def file_paths(items: list[tuple[str, FileContent | None]]) -> list[str]:
    return [p for p, c in items if c is not None]


def run_scale(bench: Bench, n_files: int, suffix: str, small_updates: int) -> None:
    items = tree_items(n_files)
    writer = FolderTree(WRITER)
    with bench.timer() as t:
        first = writer.import_tree(items, now_ms=NOW_MS)
    bench.figure(f"build{suffix}_s", t[0], "s", f"{n_files} files, one update")
    state = writer.encode_state()
    bench.figure(f"encoded_size{suffix}_mb", len(state) / 1e6, "MB", "Yjs state of the document")
    with bench.timer() as t:
        YDoc(READER.client_id).apply(state)
    bench.figure(f"doc_load{suffix}_s", t[0], "s", "pycrdt apply of the state")

    reader = FolderTree(READER)
    reader.receive(WRITER, first.seq, first.seen, first.update)
    saved = save(reader)
    bench.figure(f"saved_size{suffix}_mb", len(saved) / 1e6, "MB", "doc + update log + projection")
    cpu = time.process_time()
    with bench.timer() as t:
        warm = load(READER, saved, use_projection=True)
    warm_cpu = time.process_time() - cpu
    bench.figure(f"warm_load_projection{suffix}_s", t[0], "s", "saved projection reused")
    cpu = time.process_time()
    with bench.timer() as t:
        cold = load(READER, saved, use_projection=False)
    cold_cpu = time.process_time() - cpu
    bench.figure(f"cold_load_projection{suffix}_s", t[0], "s", "projection recomputed")
    # CPU seconds too: on a shared machine the wall clock also counts other people's work.
    bench.figure(f"warm_load_projection{suffix}_cpu_s", warm_cpu, "s", "CPU time")
    bench.figure(f"cold_load_projection{suffix}_cpu_s", cold_cpu, "s", "CPU time")
    assert warm.view.entries == cold.view.entries == reader.view.entries
    del cold

    with tempfile.TemporaryDirectory() as tmp:
        blob = Path(tmp) / "tree.bin"
        blob.write_bytes(saved)
        out = subprocess.run(python_cmd("-m", "benchmarks.crdt", "--load-only", str(blob)),
                             check=True, capture_output=True, text=True).stdout
    bench.figure(f"rss_loaded{suffix}_mb", int(out.split()[-1]) / 1e6, "MB",
                 "peak RSS of a process loading it")

    paths = file_paths(items)
    sizes: list[int] = []
    apply_ms: list[float] = []
    for i in range(small_updates):
        path = paths[(i * 7919) % len(paths)]
        up = writer.edit(path, FileContent(i.to_bytes(4, "big") * 8, 10 + i, NOW_MS + i),
                         now_ms=NOW_MS + 1_000 + i)
        sizes.append(len(up.update))
        start = time.perf_counter()
        warm.receive(WRITER, up.seq, up.seen, up.update)
        apply_ms.append((time.perf_counter() - start) * 1e3)
    bench.figure(f"one_file_update{suffix}_bytes", statistics.median(sizes), "B",
                 "a new version of one file")
    bench.figure(f"validate_apply_small_update{suffix}_ms", statistics.median(apply_ms), "ms",
                 f"median of {small_updates}, incremental projection")
    bench.figure(f"validate_apply_small_update{suffix}_p95_ms",
                 sorted(apply_ms)[int(len(apply_ms) * 0.95)], "ms", "")

    current = paths
    for round_no in range(5):
        renamed = [_renamed(p, round_no) for p in paths]
        writer.rename_many([(old, new.rsplit("/", 1)[1]) for old, new in zip(current, renamed,
                                                                              strict=True)],
                           now_ms=NOW_MS + 10_000 + round_no)
        current = renamed
    bench.figure(f"size_after_5_renames{suffix}_mb", len(writer.encode_state()) / 1e6, "MB",
                 "every file renamed 5 times")


def _renamed(path: str, round_no: int) -> str:
    folder, name = path.rsplit("/", 1)
    return f"{folder}/r{round_no}-{name}"


def main(argv: list[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["--load-only"]:  # the child process whose peak RSS is measured
        load(READER, Path(args_list[1]).read_bytes())
        print(own_peak_rss_bytes())
        return 0
    bench, _args = Bench.from_argv("crdt", argv)
    if bench.smoke:
        run_scale(bench, 300, "_smoke", small_updates=20)
    else:
        run_scale(bench, 10_000, "_10k", small_updates=200)
        run_scale(bench, 100_000, "_100k", small_updates=200)
    return bench.finish()


if __name__ == "__main__":
    raise SystemExit(main())
