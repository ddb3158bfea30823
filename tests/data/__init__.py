"""Tests of the training data layer (a package so its conftest does not shadow tests/conftest.py)."""
