"""Subcommands of ``blo``, one module per area; each registers itself on ``cli``."""
