"""The platform's own features, each a folder that declares itself (hub/features.py)."""
