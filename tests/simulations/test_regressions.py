"""Seeds that once failed on the real peer and relay, replayed so the bug stays fixed."""

from __future__ import annotations

import pytest

from simulations.scenario import run_seed
from simulations.schedule import generate

# Every seed below was found with 330 planned operations per seed (the default then).
FOUND_WITH = 330


def test_a_file_vanishing_while_its_edit_uploads_does_not_stop_the_share() -> None:
    # Seed 95 without folder moves: the conflicted-copy rename met a file the user had just
    # removed; the FsError escaped the pass and ended the share's sync loop for good.
    outcome = run_seed(95, schedule=generate(95, target_ops=FOUND_WITH, move_folders=False))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 95 --no-folder-moves --ops 330"


@pytest.mark.parametrize("seed", [3, 9, 58, 1000])
def test_folder_moves_leave_no_stale_copy_and_swaps_settle(seed: int) -> None:
    # Each once left an entry synced at two paths: moves re-keyed rows that were never looked
    # at again, a swap never settled, a stale second copy stayed on disk.
    outcome = run_seed(seed, schedule=generate(seed, target_ops=FOUND_WITH))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], f"replay: drift simulate --seed {seed} --ops 330"


@pytest.mark.parametrize("seed", [232, 304])
def test_a_file_deleted_here_but_edited_elsewhere_comes_back(seed: int) -> None:
    # Each once left one file missing on one device for good (7 of 1,000 seeds): a folder move
    # re-keyed the file's base row to a path where the user had deleted it, the edit that won
    # over the delete was never downloaded, and the next pass forgot the row without applying.
    outcome = run_seed(seed, schedule=generate(seed, target_ops=FOUND_WITH))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], f"replay: drift simulate --seed {seed} --ops 330"


def test_a_folder_moved_into_the_old_place_of_a_folder_moved_away_stays_there() -> None:
    # Seed 206: laptop moved music to photos/music, then another folder to music/docs, and
    # published both in one pass. The move into music/docs went first and landed in the tree's
    # old music folder, which the next move carried to photos/music: the tree had
    # photos/music/docs while the disk kept music/docs, and the download never settled.
    outcome = run_seed(206, schedule=generate(206, target_ops=FOUND_WITH))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 206 --ops 330"


@pytest.mark.parametrize("seed", [841, 916])
def test_a_folder_made_again_where_its_entry_moved_away_is_published(seed: int) -> None:
    # Seeds 916 (phone: work, work/q1) and 841 (pc: old/photos): a folder came back on disk at
    # a path whose index row kept its old entry (state new), while the tree held that entry
    # elsewhere and nothing at the path. Publishing found no tree entry there and recorded
    # nothing, so the folder stayed "new here: not yet published" for good.
    outcome = run_seed(seed, schedule=generate(seed, target_ops=FOUND_WITH))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], f"replay: drift simulate --seed {seed} --ops 330"


def test_a_head_announced_after_pushed_entries_is_read_at_once() -> None:
    # Seed 90 (two LAN sites): after the heal the tablet applied pushed entries up to 163 while
    # an append too big to push had announced 183; it stopped at 163 and only its periodic
    # rescan, two minutes later, read the rest (convergence 128.5 s; 8.5 s without pushes).
    outcome = run_seed(90, schedule=generate(90, lan_layout="two_sites"))
    assert outcome.violations == [], "replay: drift simulate --seed 90 --lan-layout two_sites"
    assert outcome.stats.convergence_s is not None
    assert outcome.stats.convergence_s < 30


def test_a_folder_deleted_inside_a_folder_published_as_new_is_not_made_again() -> None:
    # Seed 52: during the partition tablet moved music to work/music, then moved q1 out of it
    # and deleted it; the share moved music elsewhere, so tablet published work/music as a new
    # folder with what its index held below it, q1 included (deleted, gone from the disk). The
    # tree got work/music/q1 back, the index held it as synced, and only the periodic rescan,
    # two minutes later, found it deleted again (convergence 134.5 s; 14 s without it).
    outcome = run_seed(52)
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 52"
    assert outcome.stats.convergence_s is not None
    assert outcome.stats.convergence_s < 30


def test_a_file_deleted_inside_a_folder_moved_in_the_same_pass_is_settled_at_once() -> None:
    # Seed 843: during the partition phone moved music to photos/music and deleted c.bin in it,
    # while laptop edited music/c.bin. After the heal (and the mass-deletion guard's resume)
    # phone's pass published the move, but looked for the deleted c.bin at its old tree path:
    # the row stayed deleted in the index with nothing to wake phone, and laptop's winning edit
    # came down only with the periodic rescan (convergence 132.5 s; 13 s without it).
    outcome = run_seed(843)
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 843"
    assert outcome.stats.convergence_s is not None
    assert outcome.stats.convergence_s < 30


def test_a_folder_moved_into_a_merged_folder_leaves_no_cycle_in_the_presented_tree() -> None:
    # Seed 1220: on desk, an update moving docs into photos left photos' stale entry (merged by
    # name with another photos folder) under docs: a cycle in the presented tree, and the next
    # path walk allocated until the kernel killed the process (24 GB: the campaign's worker
    # died; the same once ended a whole campaign with BrokenProcessPool).
    outcome = run_seed(1220, schedule=generate(1220))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 1220"


def test_a_version_taken_over_the_lan_survives_its_author_restored_from_an_old_backup() -> None:
    # Seed 1059 (two sites, the relay away from 66 s to 282 s): tablet wrote work/q1/Notes.md
    # twice; pc took the envelopes over the LAN but not the blocks, then tablet was restored
    # from a backup older than both. pc forwarded the envelopes after the heal, the relay
    # recorded their blocks as owed, and nobody could ever upload them: no device converged.
    outcome = run_seed(1059)
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 1059"


@pytest.mark.parametrize("seed", [143, 400, 877])
def test_a_save_while_the_blocks_flush_is_not_set_aside_as_the_uploaded_version(seed: int) -> None:
    # Seed 400: laptop uploaded music/c.bin (286 B) at 105.5 s, then its flush waited on the
    # relay (away) until 156.0 s while the user saved the file twice; the pass then renamed the
    # newer file (288 B) to the conflicted copy of the 286 B version and recorded it as synced:
    # the edit was never published, and the disk never matched the tree (143, 877 alike).
    outcome = run_seed(seed)
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], f"replay: drift simulate --seed {seed}"


def test_quiescence_waits_for_each_disk_to_match_its_tree() -> None:
    # Seed 443: after the cross move of photos and docs (219 s), every device's apply at 259.7 s
    # failed to move the old photos folder back to photos (a deleted folder there still held a
    # newer one) and left it at photos/docs/photos; the retry 5 s later removes it. All five
    # disks were alike, so the world called that convergence (at 261.2 s) before the retries,
    # and the checker found each disk not matching its tree.
    outcome = run_seed(443)
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 443"


def test_a_device_restored_on_a_lan_island_does_not_fork_its_peers_for_good() -> None:
    # Seed 941 (two LAN sites, the relay cut off): pc sealed counters 30-40 that only tablet
    # received, then was restored from an older backup and sealed other envelopes at 30-35,
    # which the relay took after the heal. tablet held the first ones and passed the relay's
    # over as seen: it never converged, and its own changes (which had seen pc's 40) were
    # refused by the relay for good.
    outcome = run_seed(941, schedule=generate(941))
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], "replay: drift simulate --seed 941"


@pytest.mark.parametrize("seed", [440, 534])
def test_a_pass_with_lan_peers_does_not_wait_on_an_absent_relay(seed: int) -> None:
    # Seed 534 (pc and tablet cut off from the relay at 96.1 s): pc's pass skipped the log read
    # (the notification socket had not noticed yet), then retried the upload's and the LAN
    # catch-up's "which blocks do you have?" from 109.7 s to 154.6 s. Tablet's envelopes waited
    # in pc's inbox meanwhile; tablet was restored from an older backup at 152.6 s, so nobody
    # kept the blocks its versions named (seed 440 alike, pc blocked 99 s).
    outcome = run_seed(seed)
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], f"replay: drift simulate --seed {seed}"


@pytest.mark.parametrize("seed", [856, 1129])
def test_envelopes_past_a_removal_the_lan_could_not_know_of_are_taken_back(seed: int) -> None:
    # Seed 1129 (two sites): during a partition laptop removed cy; pc, on the office LAN with
    # tablet, went on writing, and tablet applied its envelopes and wrote on top of them. After
    # the heal the relay refused pc's envelopes past the cutoff and every one of tablet's that
    # had seen one: tablet's 38 changes never reached the relay. Tablet now takes them back
    # and seals its own changes again on the valid state (856 alike).
    outcome = run_seed(seed)
    assert outcome.error is None, f"{outcome.error}\n{outcome.trace_tail}"
    assert outcome.violations == [], f"replay: drift simulate --seed {seed}"
