"""trl-plus trainers: thin subclasses of TRL's GRPOTrainer, one module per algorithm."""
