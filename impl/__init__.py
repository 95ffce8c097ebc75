"""Optimized implementations: same public API as the models, plus private caches and indexes."""
