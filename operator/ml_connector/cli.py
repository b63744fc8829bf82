"""The ``ml-connector`` command.

Subcommands live in :mod:`ml_connector.commands` (one module each, exposing ``command``) and are
imported only when invoked, so ``ml-connector --help`` and the worker start fast.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from ml_connector import __version__

#: name -> module under ml_connector.commands; add a line here when adding a subcommand.
COMMANDS: dict[str, str] = {
    "audit": "audit",
    "check": "check",
    "crds": "crds",
    "demo": "demo",
    "operator": "operator",
    "replay": "replay",
    "sandbox": "sandbox",
    "sync": "sync",
    "worker": "worker",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"ml_connector.commands.{module_name}")
        command: click.Command = module.command
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ml-connector")
@click.option("--log-level", default="INFO", show_default=True, help="DEBUG, INFO, WARNING or ERROR.")
def cli(log_level: str) -> None:
    """Keep Anaplan models fed with Infor CloudSuite actuals, and send approved budgets back."""
    from ml_connector.net.redact import install_log_filter

    logging.basicConfig(
        level=log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    install_log_filter()


def main() -> None:
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
