"""Container images of ai-workbench: the catalog, Dockerfiles and the build command."""
