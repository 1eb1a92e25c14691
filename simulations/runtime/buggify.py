"""BUGGIFY: fault points inside real code, FoundationDB style.

Production code is handed a ``Buggify`` (a callable ``site -> bool``) and writes
``if self.buggify("relay.put.fail"): raise ...``. Outside simulations it gets ``NO_BUGGIFY``,
which is always False. In a simulation each site is switched on for the whole run with
probability ``activation_p`` (decided by the seed and the site name alone, so adding a site never
changes which others are on), and an active site fires on each evaluation with probability
``fire_p``. Rare paths (retries, timeouts, partial writes) then run in many seeds, not in none.

The interface and the production no-op live in ``seams``; the seeded implementation is here.
"""

from __future__ import annotations

from dataclasses import dataclass

from seams import SeededRandom
from simulations.runtime.trace import GLOBAL_HOST, Trace


@dataclass
class SiteReport:
    site: str
    active: bool
    evaluations: int = 0
    fired: int = 0


class _Site:
    __slots__ = ("report", "rng")

    def __init__(self, report: SiteReport, rng: SeededRandom) -> None:
        self.report = report
        self.rng = rng


class SeededBuggify:
    """Fault points for one simulated run; every decision comes from ``rng`` forks per site."""

    enabled = True

    def __init__(
        self,
        rng: SeededRandom,
        *,
        activation_p: float = 0.25,
        fire_p: float = 0.25,
        trace: Trace | None = None,
    ) -> None:
        self._rng = rng
        self.activation_p = activation_p
        self.fire_p = fire_p
        self._trace = trace
        self._sites: dict[str, _Site] = {}
        self._forced: dict[str, bool] = {}

    def force(self, site: str, active: bool) -> None:
        """Switch a site on or off for this run regardless of the draw (for targeted tests)."""
        self._forced[site] = active
        if site in self._sites:
            self._sites[site].report.active = active

    def __call__(self, site: str) -> bool:
        state = self._sites.get(site)
        if state is None:
            site_rng = self._rng.fork(f"buggify/{site}")
            drawn = site_rng.uniform(0.0, 1.0) < self.activation_p
            state = _Site(SiteReport(site, self._forced.get(site, drawn)), site_rng)
            self._sites[site] = state
        state.report.evaluations += 1
        if not state.report.active:
            return False
        fired = state.rng.uniform(0.0, 1.0) < self.fire_p
        if fired:
            state.report.fired += 1
            if self._trace is not None:
                self._trace.record(GLOBAL_HOST, "buggify", site=site)
        return fired

    def report(self) -> list[SiteReport]:
        """Every site evaluated this run, by name: which were on and how often they fired."""
        return [self._sites[name].report for name in sorted(self._sites)]
