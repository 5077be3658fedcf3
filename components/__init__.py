"""Lamina components."""
