"""A randomized run's schedule: a list of steps drawn from the seed before the run starts.

Each step carries its own small seed, from which it picks its targets when it runs (which file to
edit, where to move a folder), so dropping steps (shrinking) leaves the others meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seams import SeededRandom

# Five devices of three users; ada's laptop owns the share; cy is the user that may be removed.
DEVICES: tuple[tuple[str, str], ...] = (
    ("laptop", "ada"),
    ("phone", "ada"),
    ("desk", "bob"),
    ("tablet", "bob"),
    ("pc", "cy"),
)
# Where the devices sit: each seed draws one layout (device → LAN segment; a device not named
# reaches only the WAN). Swarm testing: a mix of features per seed finds more than every
# feature in every seed. Measured cost per seed (function calls, seeds 0-5): WAN only 0.82,
# two sites 1.0, an office of three 1.16, an office of four 1.64 (left out for that).
LAN_LAYOUTS: dict[str, dict[str, str]] = {
    "wan_only": {},
    "two_sites": {"laptop": "home", "desk": "home", "tablet": "office", "pc": "office"},
    "one_office": {"laptop": "office", "desk": "office", "tablet": "office"},
}
LAYOUT_ODDS = (("wan_only", 0.35), ("two_sites", 0.45), ("one_office", 0.2))
OWNER = "laptop"
REMOVABLE_USER = "cy"
# Planned operations per seed. Bursts on a device that is down do nothing, so about a fifth
# of the plan never happens; the scenario tops up to the floor of 200 (scenario.MIN_OPERATIONS).
TARGET_OPERATIONS = 250

FILE_OPS = ("create", "create", "edit", "edit", "append", "truncate", "rename", "move", "delete")
RACES = ("concurrent_edit", "edit_vs_delete", "cross_move")


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happens: ``kind`` with its devices, parameters and its own seed."""

    kind: str
    devices: tuple[str, ...] = ()
    seconds: float = 0.0
    groups: tuple[tuple[str, ...], ...] = ()
    count: int = 1
    seed: int = 0

    def describe(self) -> str:
        parts = [self.kind]
        if self.devices:
            parts.append("@" + ",".join(self.devices))
        if self.count != 1:
            parts.append(f"x{self.count}")
        if self.groups:
            parts.append("|".join("{" + ",".join(g) + "}" for g in self.groups))
        if self.seconds:
            parts.append(f"{self.seconds:.1f}s")
        return " ".join(parts)


@dataclass
class Schedule:
    seed: int
    steps: list[Step] = field(default_factory=list)
    move_folders: bool = True  # off: files still move, folders never do (to isolate a bug)
    lan_layout: str = "two_sites"  # a key of LAN_LAYOUTS

    def lan_of(self, device: str) -> str | None:
        return LAN_LAYOUTS[self.lan_layout].get(device)

    @property
    def operations(self) -> int:
        return sum(s.count * (2 if s.kind in RACES else 1) for s in self.steps if _is_op(s))


def _is_op(step: Step) -> bool:
    return step.kind in FILE_OPS or step.kind in RACES or step.kind == "burst"


def generate(
    seed: int,
    *,
    target_ops: int = TARGET_OPERATIONS,
    devices: int = 5,
    crashes: bool = True,
    partitions: bool = True,
    removals: bool = True,
    move_folders: bool = True,
    lan_layout: str | None = None,
) -> Schedule:
    """The schedule for ``seed``: bursts of file operations with races, partitions (in about
    two thirds of the seeds), crashes, a removal of ``cy`` (in about one seed in six)."""
    rng = SeededRandom(seed).fork("schedule")
    names = [d[0] for d in DEVICES[:devices]]
    if lan_layout is None:
        lan_layout = _layout(SeededRandom(seed).fork("lan"))  # own fork: the steps stay the same
    if lan_layout not in LAN_LAYOUTS:
        raise ValueError(f"unknown LAN layout {lan_layout!r}; one of {', '.join(LAN_LAYOUTS)}")
    schedule = Schedule(seed, move_folders=move_folders, lan_layout=lan_layout)
    steps = schedule.steps
    wants_partition = rng.uniform(0, 1) < 0.7 and partitions
    wants_restore = rng.uniform(0, 1) < 0.15
    backup_at = rng.uniform(0.1, 0.4) if wants_restore else 2.0
    restore_at = backup_at + rng.uniform(0.2, 0.5)
    restored = names[int(rng.uniform(1, len(names)))]  # never the owner
    wants_removal = devices >= 5 and rng.uniform(0, 1) < 0.25 and removals
    crash_p = rng.uniform(0.02, 0.08) if crashes else 0.0
    partition_at = rng.uniform(0.15, 0.6) if wants_partition else 2.0
    removal_at = rng.uniform(0.3, 0.8) if wants_removal else 2.0
    ops = 0
    while ops < target_ops:
        progress = ops / target_ops
        if progress >= partition_at:
            partition_at = 2.0
            steps.append(_partition(rng, names))
        if progress >= backup_at:
            backup_at = 2.0
            steps.append(Step("backup", (restored,)))
        if progress >= restore_at:
            restore_at = 2.0
            steps.append(Step("restore_backup", (restored,)))
        if progress >= removal_at:
            removal_at = 2.0
            steps.append(Step("remove_user", (OWNER,), seed=_seed(rng)))
        roll = rng.uniform(0, 1)
        if roll < crash_p:
            device = names[int(rng.uniform(0, len(names)))]
            mid_transfer = rng.uniform(0, 1) < 0.5
            steps.append(
                Step(
                    "crash_mid_write" if mid_transfer else "crash",
                    (device,),
                    seconds=rng.uniform(2, 60),
                    seed=_seed(rng),
                )
            )
        elif roll < 0.2:
            kind = RACES[int(rng.uniform(0, len(RACES)))]
            if kind == "cross_move" and not move_folders:
                kind = "concurrent_edit"
            pair = _two(rng, names)
            steps.append(Step(kind, pair, seed=_seed(rng)))
            ops += 2
        else:
            device = names[int(rng.uniform(0, len(names)))]
            count = 1 + int(rng.uniform(0, 8))
            steps.append(Step("burst", (device,), count=count, seed=_seed(rng)))
            ops += count
        steps.append(Step("wait", seconds=round(rng.uniform(0.05, 6.0), 3)))
    return schedule


def _partition(rng: SeededRandom, names: list[str]) -> Step:
    """Relay unreachable, LAN-only islands, or a random split of devices and the relay. It
    lasts until the schedule ends (then the harness heals it and times the convergence)."""
    mode = rng.uniform(0, 1)
    if mode < 0.35:
        return Step("partition", groups=(("relay",),))
    if mode < 0.6:
        return Step("lan_only")
    shuffled = sorted(names, key=lambda _: rng.uniform(0, 1))
    cut = 1 + int(rng.uniform(0, len(shuffled) - 1))
    side_a = ("relay", *sorted(shuffled[:cut]))
    return Step("partition", groups=(side_a, tuple(sorted(shuffled[cut:]))))


def _layout(rng: SeededRandom) -> str:
    roll = rng.uniform(0, 1)
    for name, odds in LAYOUT_ODDS:
        if roll < odds:
            return name
        roll -= odds
    return LAYOUT_ODDS[-1][0]


def _two(rng: SeededRandom, names: list[str]) -> tuple[str, str]:
    first = names[int(rng.uniform(0, len(names)))]
    others = [n for n in names if n != first]
    return first, others[int(rng.uniform(0, len(others)))]


def _seed(rng: SeededRandom) -> int:
    return int.from_bytes(rng.bytes(4), "big")
