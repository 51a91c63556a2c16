"""Who gets credit for what: contributions by role, scoring, impact along model lineages."""
