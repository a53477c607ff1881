"""The local runner: `make run`, the export generator, the dev servers (PostgreSQL, the GCS
emulator, Spark) and the lineage and audit helpers. It uses the engine (pachlocal) and the
library (lensfeed); neither imports it."""
