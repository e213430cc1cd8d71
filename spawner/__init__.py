"""Spawners of ai-workbench: turning an instance's options into running containers or pods."""
