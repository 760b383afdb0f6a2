"""Path safety lives in :mod:`medmo_pipeline.safe_paths` (the recipe loader needs it too, below the
data layer). This name stays only for code written against it before the move; import
``medmo_pipeline.safe_paths`` instead (nothing in the repository imports this module).
"""

from medmo_pipeline.safe_paths import UnsafePathError, check_relative, safe_glob, safe_join  # noqa: F401
