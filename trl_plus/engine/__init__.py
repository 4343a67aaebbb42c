"""The trl-plus engine: one GRPO-family trainer whose parts compose (see `docs/compose.md`)."""
