"""Datasets and synthetic defects."""
