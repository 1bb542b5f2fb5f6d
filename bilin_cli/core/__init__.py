"""The bottom layer: errors, device choice, terminal-safe names, interrupt state.

Imports nothing else of bilin.
"""
