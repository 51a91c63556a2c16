"""What people and tools read: the model provenance report and the contributors report, as frozen views
that every renderer and exporter reads (``to_json`` is the published JSON)."""
