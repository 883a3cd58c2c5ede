"""The HTTP edge: an OpenAI-compatible API in front of the scheduler."""
