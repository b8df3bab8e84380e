"""The bundled schemas (``cms_ak4``, ``jetclass``, ``nano_ak4``, ``nano_ak8``): package data, read by name
(``--schema cms_ak4``)."""
