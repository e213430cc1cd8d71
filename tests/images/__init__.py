"""Tests of images/: saving instances through either backend."""
