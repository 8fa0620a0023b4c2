"""The models.

``anomalib.models`` is imported first, on purpose: importing it registers the plugin models
(:mod:`anomalib_pdae.plugin`), which imports the model modules below. Were it first imported
half-way through one of them (they all use ``anomalib.models.components``), that module would
be found half-initialised and its model left unregistered.
"""

import anomalib.models  # noqa: F401
