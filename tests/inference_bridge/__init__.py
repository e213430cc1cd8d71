"""Tests of models, services and batch inference."""
