"""``python -m openledger_cli``: the CLI, for hooks that must not depend on PATH."""

from openledger_cli.main import cli

if __name__ == "__main__":
    cli(prog_name="openledger")
