"""Training configs: weaver-core data-config YAML, validated, with expressions parsed safely."""

from jetstore.config.weaver import InputGroup, TrainingConfig, Variable, WeightsSpec, load_training_config

__all__ = ["InputGroup", "TrainingConfig", "Variable", "WeightsSpec", "load_training_config"]
