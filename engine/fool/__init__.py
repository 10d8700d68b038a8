"""Adversarial methods: small perturbations that change what a classifier says."""
