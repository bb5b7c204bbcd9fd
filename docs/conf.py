"""Sphinx configuration for the distkv documentation."""

project = "distkv"
author = "The distkv developers"
copyright = "2026, The distkv developers"
extensions: list[str] = []
master_doc = "index"
exclude_patterns = ["_build"]
html_theme = "alabaster"
