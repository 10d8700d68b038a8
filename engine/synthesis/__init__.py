"""Synthesis recipes over the shared optimisation loop (engine.optim)."""
