"""The Dagster code location: ``dagster dev -w workspace.yaml`` or ``dagster ... -m assets``."""

from assets.definitions import default_definitions

defs = default_definitions()
