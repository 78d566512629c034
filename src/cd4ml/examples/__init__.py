"""Bundled example problems."""
