"""The bundled schemas (``cms_ak4``, ``jetclass``, ...): this folder is installed as ``jetstore.schemas``."""
