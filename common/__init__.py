"""Small helpers every part of Shoal may use; this package imports nothing of Shoal."""
