from __future__ import annotations

import pytest

from services.wiring.eventlog import EventLog
from services.wiring.settings import Settings
from tests.planner.scenario import Scenario, kube, sandbox, settings

__all__ = ["kube", "sandbox", "scenario", "settings"]


@pytest.fixture
def scenario(event_log: EventLog, settings: Settings) -> Scenario:
    return Scenario(event_log, settings)
