"""ParT trainer on jetstore streams: ``python -m jetstore.train`` or ``jetstore train``."""
