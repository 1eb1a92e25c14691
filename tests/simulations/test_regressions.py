"""Seeds that once failed on the real peer and relay, replayed so the bug stays fixed."""

from __future__ import annotations

from simulations.scenario import run_seed
from simulations.schedule import generate


def test_a_file_vanishing_while_its_edit_uploads_does_not_stop_the_share() -> None:
    # Seed 95 without folder moves: the conflicted-copy rename met a file the user had just
    # removed; the FsError escaped the pass and ended the share's sync loop for good.
    outcome = run_seed(95, schedule=generate(95, move_folders=False))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 95 --no-folder-moves"
