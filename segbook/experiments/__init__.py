"""Experiments that only one chapter needs (one module per chapter or topic); import the module."""
