"""The platform API: a JupyterHub service for instances, images and flavors."""
