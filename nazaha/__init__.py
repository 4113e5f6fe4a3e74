"""Nazaha: anonymous citizen reporting bot."""
