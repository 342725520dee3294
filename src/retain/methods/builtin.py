"""Importing this module registers every method that ships with retain."""

from retain.methods import multitask, replay, sequential  # noqa: F401
