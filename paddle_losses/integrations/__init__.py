"""Integrations with other code bases (PaddleClas forks)."""
