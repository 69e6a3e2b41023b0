"""Sanad core: settings, Arabic text analysis, retrieval and answering.

Nothing here imports from ``index``, ``evals``, ``service`` or ``sanad``.
"""
