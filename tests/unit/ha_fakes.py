"""Hand-written fakes for the HA tests: what follows the leadership, and where runs are resumed."""

from __future__ import annotations

from tfops.models import Run


class Roles:
    """`tfops.ha.instances.Roles`: remembers what it was told, in order."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    def lead(self) -> None:
        self.heard.append("lead")

    def follow(self) -> None:
        self.heard.append("follow")


class Queue:
    """`tfops.ha.instances.Resuming`: the runs handed back to the queue."""

    def __init__(self) -> None:
        self.resumed: list[Run] = []

    def resume(self, runs) -> None:
        self.resumed.extend(runs)
