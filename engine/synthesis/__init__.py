"""Synthesis methods: images made by optimising what a network responds to."""
