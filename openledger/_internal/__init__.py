"""Implementation details of OpenLedger; nothing here is a stable API."""
