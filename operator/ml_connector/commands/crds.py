"""``ml-connector crds``: write the CustomResourceDefinitions generated from ``spec.py``."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("crds")
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("crds"),
    show_default=True,
    help="Directory to write the CRD YAML files into.",
)
@click.option(
    "--chart-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("charts/ml-connector/files/crds"),
    show_default=True,
    help="Second copy for the Helm chart's CRD templates ('' to skip).",
)
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the files differ from the models.")
def command(output_dir: Path, chart_dir: Path, check: bool) -> None:
    """Generate the SyncConnection and SyncRun CRDs from the pydantic models."""
    from ml_connector.kube.crds import drifted_files, write_crds

    directories = [output_dir] + ([chart_dir] if str(chart_dir) not in ("", ".") else [])
    if check:
        stale = [f"{d}/{name}" for d in directories for name in drifted_files(d)]
        if stale:
            raise click.ClickException(
                f"CRDs are out of date with spec.py: {', '.join(stale)}; run `ml-connector crds`"
            )
        click.echo(f"CRDs in {', '.join(map(str, directories))} are up to date")
        return
    for directory in directories:
        for path in write_crds(directory):
            click.echo(f"wrote {path}")
