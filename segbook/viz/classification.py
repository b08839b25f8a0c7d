"""Figures for chapter 1 (classification backbones).

Each function takes a result from the chapter's study (or plain tensors) and returns the matplotlib
figure, so the chapter cell is one call.
"""
from __future__ import annotations

__all__: list[str] = []
