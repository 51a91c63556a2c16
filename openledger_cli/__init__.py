"""The ``openledger`` command line: argument parsing and rendering over the core library."""
