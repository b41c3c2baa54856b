"""Recipes (YAML) and small shipped checkpoints of genbench's reference models."""
