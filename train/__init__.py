"""ParT trainer on jetstore streams: ``python -m train`` or ``jetstore train``."""
