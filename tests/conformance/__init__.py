"""Conformance: pytorch-ignite 0.5.5's own test suite run against nbengine (``ignite`` aliased)."""
