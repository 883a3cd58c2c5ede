"""Measurements and what they cost: benchmarks, energy, electricity against API prices."""
