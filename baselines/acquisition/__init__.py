"""Acquisition strategies (active learning query functions)."""
