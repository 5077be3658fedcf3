"""Lamina serving."""
