"""Lamina models."""

import pipeline  # noqa: F401,E402  (sets TensorFlow defaults before TensorFlow loads)
