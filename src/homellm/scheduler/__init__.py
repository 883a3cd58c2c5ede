"""Loaded models, where they go, their request queues, and the threads that run them."""

from homellm.scheduler.models import ModelRunner, ModelStatus, Scheduler
from homellm.scheduler.placement import LoadPlan, Placement, loadable_model
from homellm.scheduler.stream import Generation

__all__ = ["Generation", "LoadPlan", "ModelRunner", "ModelStatus", "Placement", "Scheduler", "loadable_model"]
