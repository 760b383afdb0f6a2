"""The sample contract now lives in :mod:`medmo_pipeline.schema.rows`; this name stays while the
curation package still imports it from here (new code imports ``medmo_pipeline.schema.rows``)."""

from medmo_pipeline.schema.rows import (  # noqa: F401 - re-exported
    BOX_TYPE,
    IMAGE_TYPE,
    MESSAGE_TYPE,
    SAMPLE_SCHEMA,
    SPLITS,
    TASKS,
    validate_row,
)
