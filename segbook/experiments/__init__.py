"""Code that only one chapter needs: one module per chapter or topic.

The core package (``segbook.models``, ``segbook.nn``, ``segbook.data``, ``segbook.train``, ...)
holds what several chapters share; a chapter's reference numbers, its staged-training glue and its
one-off measurements live here, imported by module (``from segbook.experiments.fcn import ...``),
so that nothing in the core imports them.
"""
__all__: list[str] = []
