"""Experiment code used by single chapters (one module per chapter), tested like the rest of segbook."""
