"""Resilience primitives: circuit breakers, backend call guards, rate-limit algorithms."""
