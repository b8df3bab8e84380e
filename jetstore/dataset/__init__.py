"""A dataset: its manifest, write lease and writer, and the datasets read as one (``Dataset``, ``Collection``)."""
