"""The bundled examples: specs and data that `lamina demo` copies into its work folder.

Shipped as package data (`lamina.examples`), so the demo runs from a wheel install as from a checkout.
"""
