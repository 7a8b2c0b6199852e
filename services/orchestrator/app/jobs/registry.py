"""The job kinds, by run kind (``runs.kind``): what :class:`~services.orchestrator.app.runs.Orchestrator` executes.

A new kind of run is a module with a class satisfying :class:`~services.orchestrator.app.jobs.base.Job` and one line
here; the orchestrator does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from services.orchestrator.app.jobs.base import JobFactory
from services.orchestrator.app.jobs.evaluation import EvaluationJob
from services.orchestrator.app.jobs.research import ResearchJob

#: Run kind → job factory.
JOBS: Mapping[str, JobFactory] = MappingProxyType({
    "research": ResearchJob,
    "org_eval": EvaluationJob,
})

__all__ = ["JOBS"]
