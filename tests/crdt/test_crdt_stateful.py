"""A Hypothesis state machine over three replicas: Hypothesis picks who acts and when updates
travel, and shrinks a failure to the shortest sequence of steps."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.crdt.crdt_sim import Sim, check_all, check_no_cycles, check_unique_names

REPLICA = st.integers(min_value=0, max_value=2)
CHOICE = st.integers(min_value=0, max_value=2**16)


class FolderTreeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sim = Sim(seed=0, n_replicas=3)

    @rule(i=REPLICA, choice=CHOICE)
    def local_change(self, i: int, choice: int) -> None:
        self.sim.rng.seed(choice)  # the drawn number decides which change, on what
        self.sim.local_op(i)

    @rule(i=REPLICA, choice=CHOICE)
    def deliver_one(self, i: int, choice: int) -> None:
        self.sim.rng.seed(choice)
        self.sim.deliver_random(i)

    @rule(i=REPLICA)
    def restart(self, i: int) -> None:
        self.sim.restart(i)

    @rule()
    def sync_everyone(self) -> None:
        self.sim.anti_entropy()
        check_all(self.sim)

    @invariant()
    def each_tree_is_sound(self) -> None:
        for tree in self.sim.trees:
            check_no_cycles(tree)
            check_unique_names(tree)

    def teardown(self) -> None:
        self.sim.anti_entropy()
        check_all(self.sim)


FolderTreeMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=80, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_folder_tree_state_machine = FolderTreeMachine.TestCase
