"""Contracts the project owns (see README.md); tests validate against them."""
