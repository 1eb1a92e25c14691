"""Fault points: off in production, per-run activation from the seed, then chance per call."""

from __future__ import annotations

from seams import SeededRandom
from simulations.runtime import NO_BUGGIFY, SeededBuggify, Trace


def _activated(buggify: SeededBuggify, sites: list[str]) -> set[str]:
    for site in sites:
        buggify(site)
    return {report.site for report in buggify.report() if report.active}


def test_production_fault_points_never_fire() -> None:
    assert NO_BUGGIFY.enabled is False
    assert not any(NO_BUGGIFY(f"site{i}") for i in range(1000))


def test_activation_depends_on_seed_and_site_name_only() -> None:
    sites = [f"relay.put.{i}" for i in range(200)]
    forward = _activated(SeededBuggify(SeededRandom(5)), sites)
    backward = _activated(SeededBuggify(SeededRandom(5)), list(reversed(sites)))
    with_extra = _activated(SeededBuggify(SeededRandom(5)), ["new.site", *sites])
    assert forward == backward == with_extra - {"new.site"}
    assert forward != _activated(SeededBuggify(SeededRandom(6)), sites)


def test_sites_activate_and_fire_at_about_the_configured_rates() -> None:
    buggify = SeededBuggify(SeededRandom(1), activation_p=0.25, fire_p=0.1)
    sites = [f"s{i}" for i in range(2000)]
    active = _activated(buggify, sites)
    assert 400 < len(active) < 600
    site = sorted(active)[0]
    fires = sum(buggify(site) for _ in range(5000))
    assert 400 < fires < 600
    inactive = sorted(set(sites) - active)[0]
    assert not any(buggify(inactive) for _ in range(1000))


def test_fire_sequences_replay_per_seed() -> None:
    def sequence(seed: int) -> list[bool]:
        buggify = SeededBuggify(SeededRandom(seed), activation_p=1.0, fire_p=0.5)
        return [buggify("peer.fetch") for _ in range(64)]

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)


def test_force_overrides_the_draw_and_the_report_counts() -> None:
    trace = Trace(now=lambda: 1.5)
    buggify = SeededBuggify(SeededRandom(2), activation_p=0.0, fire_p=1.0, trace=trace)
    assert not buggify("relay.commit")
    buggify.force("relay.commit", True)
    buggify.force("peer.rename", True)
    assert buggify("relay.commit")
    assert buggify("peer.rename")
    buggify.force("peer.rename", False)
    assert not buggify("peer.rename")
    reports = {r.site: r for r in buggify.report()}
    assert [r.site for r in buggify.report()] == ["peer.rename", "relay.commit"]
    assert (reports["relay.commit"].evaluations, reports["relay.commit"].fired) == (2, 1)
    assert (reports["peer.rename"].active, reports["peer.rename"].fired) == (False, 1)
    assert trace.lines == [
        "    1500.000 -          buggify site=relay.commit",
        "    1500.000 -          buggify site=peer.rename",
    ]
