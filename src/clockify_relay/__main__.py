"""``python -m clockify_relay`` is the ``clockify-relay`` command."""

from clockify_relay.cli import run_cli

run_cli()
