"""The acceptance gate (see checks.py): what a model must pass to become champion."""
