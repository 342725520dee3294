"""MIGU: gradient row masks from output magnitudes (see ``method.py``; ``magnitude`` measures)."""

from retain.methods.migu.method import Migu, MiguParams

__all__ = ["Migu", "MiguParams"]
