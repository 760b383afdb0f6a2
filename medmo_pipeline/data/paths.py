"""Path safety now lives in :mod:`medmo_pipeline.safe_paths` (the recipe loader needs it too, below
the data layer); this name stays for the adapters that import it from here."""

from medmo_pipeline.safe_paths import UnsafePathError, check_relative, safe_glob, safe_join  # noqa: F401
