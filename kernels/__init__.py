"""Jupyter kernels of ai-workbench: one kernel per Python environment of an image."""
