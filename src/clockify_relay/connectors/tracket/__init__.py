"""Tracket target: config.py (TOML section), mapping.py (pure), client.py (HTTP)."""
