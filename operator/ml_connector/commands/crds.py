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
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if the files differ from the models.")
def command(output_dir: Path, check: bool) -> None:
    """Generate the SyncConnection and SyncRun CRDs from the pydantic models."""
    from ml_connector.kube.crds import drifted_files, write_crds

    if check:
        drifted = drifted_files(output_dir)
        if drifted:
            raise click.ClickException(
                f"CRDs in {output_dir} are out of date with spec.py: {', '.join(drifted)}; run `ml-connector crds`"
            )
        click.echo(f"CRDs in {output_dir} are up to date")
        return
    for path in write_crds(output_dir):
        click.echo(f"wrote {path}")
