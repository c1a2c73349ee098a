"""Collecting and preparing text: sources, cleaning, deduplication, splits and token files."""
