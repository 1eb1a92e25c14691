"""Switches for the projection rules. Production always uses :data:`DEFAULT_RULES`.

Each flag exists so the tests can show that the randomized checks fail without that rule; no caller
outside the tests should ever turn one off.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProjectionRules:
    cycle_skip: bool = True  # skip a move that would make a node its own ancestor
    move_beats_delete: bool = True  # a move concurrent with a delete voids the delete
    edit_beats_delete: bool = True  # a version head the delete had not seen voids it
    revive_unseen: bool = True  # a deleted folder holding unseen children comes back
    conflicted_copies: bool = True  # losing version heads show as conflicted copies
    name_collisions: bool = True  # merge folders, dedupe equal files, suffix the rest


DEFAULT_RULES = ProjectionRules()
