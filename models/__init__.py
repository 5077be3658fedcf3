"""Lamina models."""
