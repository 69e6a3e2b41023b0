"""The ``sanad`` command: the composition root above ``rag``, ``index``, ``evals`` and ``service``."""
