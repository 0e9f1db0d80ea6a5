"""The files of a run's model bundle (see export.bundle_zip); its modules are maskdet's own face finding and crop."""
