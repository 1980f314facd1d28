"""`relaunch schema`: the JSON schema of job.yaml or relaunch.toml."""

from __future__ import annotations

import click

from relaunch.cli.common import echo_json


@click.command()
@click.argument("which", type=click.Choice(["job", "project"]), default="job")
def schema(which: str) -> None:
    """Print the JSON schema of job.yaml (job) or relaunch.toml (project)."""
    if which == "job":
        from relaunch.spec.job import JobSpec

        echo_json(JobSpec.model_json_schema())
    else:
        from relaunch.spec.project import ProjectConfig

        echo_json(ProjectConfig.model_json_schema())
