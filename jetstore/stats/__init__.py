"""Statistics computed once per dataset and config: weaver-exact standardisation and reweighting tables."""
