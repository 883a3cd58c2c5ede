"""Loaded models, their request queues, and the threads that run them."""

from homellm.scheduler.generation import Generation
from homellm.scheduler.models import LoadPlan, ModelRunner, ModelStatus, Scheduler

__all__ = ["Generation", "LoadPlan", "ModelRunner", "ModelStatus", "Scheduler"]
