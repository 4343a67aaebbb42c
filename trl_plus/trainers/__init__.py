"""The named algorithms, each a preset of the engine (`trl_plus.engine`): a config subclass with its paper's
defaults and checks, and a trainer subclass that names it."""
