"""Pure values and the per-jet rules: the jet table, a jet's class, cell, split and fraction, a dataset's layout
and the names inside its root. No I/O."""
