"""The `relaunch` command. Subcommands live in their own modules and are imported only
when invoked, so `relaunch --help` and `relaunch ps` start fast (heavy imports are lazy).
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from relaunch import __version__

# name → (module, attribute, one-line help). The one explicit registry of commands.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("relaunch.cli.run", "run", "Validate a job, queue it, and optionally follow it."),
    "resume": (
        "relaunch.cli.resume",
        "resume",
        "Queue an ended run again under its id, from its last checkpoint.",
    ),
    "agent": (
        "relaunch.cli.agent",
        "agent",
        "Run an agent: claim queued runs, keep them alive.",
    ),
    "ps": ("relaunch.cli.inspect", "ps", "List runs with their state, progress and notes."),
    "status": ("relaunch.cli.inspect", "status", "Show one run's record, attempts and events."),
    "logs": ("relaunch.cli.inspect", "logs", "Print a run's output (one attempt, or follow)."),
    "events": ("relaunch.cli.inspect", "events", "Print a run's events."),
    "stop": ("relaunch.cli.control", "stop", "Stop a run: write .stop, cancel its attempt."),
    "preempt": ("relaunch.cli.control", "preempt", "Simulate a spot preemption of a local run."),
    "images": (
        "relaunch.cli.images",
        "images",
        "Plan, build and list the container image stack (content-hash tags).",
    ),
    "doctor": (
        "relaunch.cli.doctor",
        "doctor",
        "Check the store, agents and a job's settings before running it.",
    ),
    "serial": ("relaunch.cli.gce", "serial", "Print a GCE run's VM serial console."),
    "vms": ("relaunch.cli.gce", "vms", "List relaunch's VMs and whether a live run owns each."),
    "cleanup": ("relaunch.cli.gce", "cleanup", "Delete VMs and Vertex jobs no live run owns."),
    "schema": (
        "relaunch.cli.schema",
        "schema",
        "Print the JSON schema of job.yaml or relaunch.toml",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the registry: --help imports no subcommand module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="relaunch")
def cli() -> None:
    """relaunch: from source to a self-healing training job on spot capacity.

    Start with `relaunch run examples/quickstart/job.yaml --follow`.
    """


def main(argv: list[str] | None = None) -> Any:
    from relaunch.errors import RelaunchError, credentials_error, missing_dependency

    try:
        return cli.main(args=argv, prog_name="relaunch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        # One line, like every other error: what is wrong, and where the help is.
        where = e.ctx.command_path if e.ctx is not None else "relaunch"
        click.echo(f"error: {e.format_message()} — see `{where} --help`", err=True)
        sys.exit(2)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except RelaunchError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except ModuleNotFoundError as e:
        missing = missing_dependency(e)
        if missing is None:
            raise
        click.echo(f"error: {missing}", err=True)
        sys.exit(missing.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        cred = credentials_error(e)
        if cred is None:
            raise
        click.echo(f"error: {cred}", err=True)
        sys.exit(cred.exit_code)


if __name__ == "__main__":
    main()
