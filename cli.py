"""recastkit command-line interface: a thin click layer over :mod:`recast` and :mod:`likelihood`.

Only this module configures logging (``-v`` / ``-q``).  Errors of the two packages become
a one-line message on stderr and exit status 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

__all__ = ["main"]

__version__ = "0.1.0"

log = logging.getLogger("recastkit")


class _Group(click.Group):
    """A click group that turns our own errors into a clean one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        from likelihood.errors import LikelihoodError
        from recast.errors import RecastError

        try:
            return super().invoke(ctx)
        except (RecastError, LikelihoodError) as err:
            log.debug("error details", exc_info=True)
            click.echo(f"Error: {err}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _configure_logging(verbose: int, quiet: int) -> None:
    level = logging.WARNING - 10 * verbose + 10 * quiet
    level = max(logging.DEBUG, min(logging.CRITICAL, level))
    logging.basicConfig(
        level=level,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="recastkit")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("-q", "--quiet", count=True, help="Less log output (-q errors only).")
def main(verbose: int, quiet: int) -> None:
    """recastkit: reinterpret published LHC searches with their full likelihoods.

    \b
    fetch       find, download and cache HEPData likelihood archives
    make-patch  turn recasting-tool yields into signal JSON patches
    scan        CLs for every point of a signal grid, in parallel
    contour     exclusion contours and plots from scan results
    demo        the whole chain on the bundled toy analysis, offline
    """
    _configure_logging(verbose, quiet)


# ---------------------------------------------------------------------------------------
# fetch / cache (issue: recastkit fetch)
# ---------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------
# make-patch (issue: recastkit make-patch)
# ---------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------
# scan (issue: recastkit scan)
# ---------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------
# contour (issue: exclusion contours and plots)
# ---------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------
# demo (issue: bundled example)
# ---------------------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
