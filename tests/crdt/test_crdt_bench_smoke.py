"""The crdt benchmark at smoke size reports what its design promises (sizes, not timings)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import crdt as crdt_bench


def test_crdt_benchmark_smoke(tmp_path: Path) -> None:
    assert crdt_bench.main(["--smoke", "--out", str(tmp_path)]) == 0
    figures = json.loads((tmp_path / "crdt.smoke.json").read_text())["figures"]
    assert figures["one_file_update_smoke_bytes"]["value"] <= 200
    assert figures["size_after_5_renames_smoke_mb"]["value"] > figures[
        "encoded_size_smoke_mb"]["value"]
