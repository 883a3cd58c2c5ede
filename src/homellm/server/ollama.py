"""Stub: filled in by issue 21."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
