"""Reproductions of the published tables, next to the authors' own numbers."""
