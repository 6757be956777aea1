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
            click.echo(f"Error: {getattr(err, 'cli_message', None) or err}", err=True)
            ctx.exit(1)
        except OSError as err:  # a file-system error no command turned into its own words
            log.debug("error details", exc_info=True)
            click.echo(f"Error: {_os_error(err)}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            ctx.exit(130)


def _os_error(err: OSError) -> str:
    """``path: cause`` of an OSError, in one line (``Read-only file system``, ``No space...``)."""
    cause = err.strerror or " ".join(str(err).split()) or type(err).__name__
    paths = [str(p) for p in (err.filename, err.filename2) if p is not None]
    return f"{' -> '.join(paths)}: {cause}" if paths else cause


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

    Fetch a HEPData likelihood archive, turn recasting-tool yields into signal patches,
    scan CLs over the whole signal grid in parallel, and draw the exclusion contour.
    `recastkit demo` runs the whole chain offline on the bundled toy analysis.
    """
    _configure_logging(verbose, quiet)


# ---------------------------------------------------------------------------------------
# fetch / cache (issue: recastkit fetch)
# ---------------------------------------------------------------------------------------


def _split_labels(value: str | None) -> list[str] | None:
    if value is None:
        return None
    labels = [s.strip() for s in value.split(",") if s.strip()]
    if not labels:
        raise click.BadParameter(
            "give comma-separated names, e.g. --labels m1,m2", param_hint="--labels"
        )
    return labels


def _likelihoods_table(table: Any) -> str:
    rows = [("name", "format", "points", "labels", "digest", "BkgOnly")]
    for r in table.itertuples(index=False):
        digest = {True: "ok", False: "MISMATCH"}.get(r.digest_ok, "-")
        rows.append(
            (r.name, r.format, str(r.n_points), ",".join(r.labels) or "-", digest, r.bkgonly)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


@main.command("fetch")
@click.argument("source")
@click.option("--inspire", is_flag=True, help="Read a bare number as an INSPIRE id (1748602).")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Cache folder [default: $RECASTKIT_CACHE, else the XDG cache folder].",
)
@click.option("--offline", is_flag=True, help="Use only the cache; fail if SOURCE is not there.")
@click.option("--refresh", is_flag=True, help="Download again even if cached.")
@click.option("--force", is_flag=True, help="Allow URLs outside hepdata.net / doi.org.")
@click.option(
    "--labels",
    default=None,
    help="Names of the point values of legacy patch files: m1,m2,... (remembered with the "
    "cache entry: later scans of it use them).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Abandon a download attempt after SECONDS without progress (stall), give up after "
    "max(120, 60 x SECONDS) in all [default: 20 s stall, 1 h in all].",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document for machines.")
def fetch_command(
    source: str,
    inspire: bool,
    cache_dir: str | None,
    offline: bool,
    refresh: bool,
    force: bool,
    labels: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Find, download (once) and list the likelihoods of SOURCE.

    \b
    SOURCE is one of:
      ins1748602                         INSPIRE id (or 1748602 with --inspire)
      10.17182/hepdata.89408             HEPData record DOI (its HistFactory resources)
      10.17182/hepdata.89408.v3/r2       HEPData resource DOI
      https://www.hepdata.net/record/resource/<id>?view=true
      https://...                        other archive URL (needs --force)
      likelihoods.tar.gz | .tgz | .tar | .zip | folder/
    """
    import json

    from recast.archive import likelihoods
    from recast.fetching import fetch

    label_list = _split_labels(labels)
    path = fetch(
        source,
        cache_dir=cache_dir,
        offline=offline,
        refresh=refresh,
        progress=not as_json,
        inspire=inspire,
        force=force,
        labels=label_list,
        timeout=timeout,
    )
    table = likelihoods(path, labels=label_list)
    if as_json:
        doc = {"source": source, "path": str(path), "likelihoods": table.to_dict(orient="records")}
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(_likelihoods_table(table))
    click.echo(f"\n{len(table)} likelihood(s) in {path}")


@main.group("cache")
def cache_group() -> None:
    """List, verify or clear the local cache of downloaded likelihood archives."""


@cache_group.command("list")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Cache folder [default: $RECASTKIT_CACHE, else the XDG cache folder].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def cache_list_command(cache_dir: str | None, as_json: bool) -> None:
    """List the cached archives (key, size, time, source)."""
    import json

    from recast.store import cache_entries, cache_root

    entries = cache_entries(cache_dir)
    root = cache_root(cache_dir)
    if as_json:
        doc = {"cache": str(root), "entries": entries.to_dict(orient="records")}
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    if entries.empty:
        click.echo(f"cache {root} is empty")
        return
    for e in entries.itertuples(index=False):
        size = _human_size(e.size or 0)
        click.echo(f"{e.key}  {size:>10}  {e.time}  {e.source}")
    click.echo(f"\n{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} in {root}")


def _human_size(n: float) -> str:
    """Bytes in SI units, as ``ls -h --si`` / ``du --si``: ``512 B``, ``8.8 kB``, ``394 MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            break
        n /= 1000
    if unit == "B":
        return f"{int(n)} B"
    return f"{n:.1f} {unit}" if abs(n) < 100 else f"{n:.0f} {unit}"


@cache_group.command("verify")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Cache folder [default: $RECASTKIT_CACHE, else the XDG cache folder].",
)
@click.option("--key", "keys", multiple=True, help="Verify only this entry (repeatable).")
@click.option("--no-repair", is_flag=True, help="Only report; do not re-extract corrupt entries.")
def cache_verify_command(cache_dir: str | None, keys: tuple[str, ...], no_repair: bool) -> None:
    """Check every cached file against its recorded sha256; repair from the kept archive."""
    from recast.errors import CacheError
    from recast.fetching import verify_cache
    from recast.store import cache_root

    table = verify_cache(cache_dir, keys=list(keys) or None, repair=not no_repair)
    root = cache_root(cache_dir)
    if table.empty:
        click.echo(f"cache {root} is empty")
        return
    for r in table.itertuples(index=False):
        click.echo(
            f"{r.key}  {r.status:<10}  {r.files} files" + (f"  {r.problem}" if r.problem else "")
        )
    bad = table[table.status == "corrupt"]
    if not bad.empty:
        raise CacheError(
            f"{len(bad)} corrupt cache entr{'y' if len(bad) == 1 else 'ies'} in {root} that "
            f"cannot be repaired: fetch again with --refresh, or `recastkit cache clear --key "
            f"{bad.key.iloc[0]}`",
            path=root,
        )
    click.echo(f"\n{len(table)} entr{'y' if len(table) == 1 else 'ies'} verified in {root}")


@cache_group.command("clear")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help="Cache folder [default: $RECASTKIT_CACHE, else the XDG cache folder].",
)
@click.option("--key", "keys", multiple=True, help="Remove only this entry (repeatable).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def cache_clear_command(cache_dir: str | None, keys: tuple[str, ...], yes: bool) -> None:
    """Remove cached archives (all, or those given with --key)."""
    from recast.store import cache_root, clear_cache

    root = cache_root(cache_dir)
    what = ", ".join(keys) if keys else "every entry"
    if not yes and not click.confirm(f"Remove {what} from {root}?", default=False):
        click.echo("Nothing removed.")
        return
    n = clear_cache(cache_dir, keys=list(keys) if keys else None)
    click.echo(f"Removed {n} entr{'y' if n == 1 else 'ies'} from {root}")


# ---------------------------------------------------------------------------------------
# make-patch (issue: recastkit make-patch)
# ---------------------------------------------------------------------------------------


def _hepdata_from_cache(bkgonly: str) -> str | None:
    """``insNNNNNNN`` when BKGONLY lies in a cache entry fetched from a HEPData record whose
    INSPIRE id the manifest records (said on stderr), else None."""
    from recast.store import entry_manifest

    ins = (entry_manifest(bkgonly) or {}).get("inspire_id")
    if not (isinstance(ins, int) or (isinstance(ins, str) and ins.isdigit())):
        return None
    ref = f"ins{int(ins):07d}"
    click.echo(
        f"make-patch: --hepdata {ref} inferred: {bkgonly} comes from the fetched HEPData record "
        f"of {ref} (give --hepdata to override)",
        err=True,
    )
    return ref


def _split_template(value: str | None) -> tuple[str | None, str | None]:
    """``PATCHSET[:NAME]`` -> (path, name); a path that exists as given wins."""
    from pathlib import Path

    if value is None:
        return None, None
    if Path(value).exists() or ":" not in value:
        return value, None
    path, name = value.rsplit(":", 1)
    return path, (name or None)


def _xsec_option(value: str | None) -> float | str | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _xsec_table(value: float | str | None, yields_path: str, fmt: str | None) -> tuple[Any, Any]:
    """``--xsec`` -> (table for the patch metadata, value for reading native acceptances)."""
    from pathlib import Path

    from recast.yields import _guess_format

    if value is None:
        return None, None
    native = (fmt or _guess_format(Path(yields_path))) != "tidy"
    if isinstance(value, float):
        return None, value if native else None
    if native:
        import pandas as pd

        try:
            header = pd.read_csv(value, comment="#", nrows=0).columns
        except (OSError, ValueError):
            return value, value  # read_yields reports the unreadable file
        # acceptances need a cross-section in pb; a table in fb serves the metadata only
        return value, value if "xsec_pb" in [str(c).strip() for c in header] else None
    return value, None


@main.command("make-patch")
@click.argument("bkgonly", type=click.Path(exists=True, dir_okay=False))
@click.argument("yields_path", metavar="YIELDS", type=click.Path(exists=True))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the PatchSet (JSON) here."
)
@click.option(
    "--per-point-dir",
    type=click.Path(file_okay=False),
    help="Also write each patch as DIR/patch.<name>.json (a list of operations).",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False),
    help="Region mapping file (JSON or TOML): tool region -> workspace channel and bin.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["tidy", "simpleanalysis", "madanalysis5"]),
    default=None,
    help="Yields format (default: guessed from YIELDS).",
)
@click.option(
    "--labels",
    default=None,
    help="Comma-separated point-label columns (default: all non-reserved columns).",
)
@click.option(
    "--point-pattern",
    default=None,
    help=r"Native output: regex with named groups for the labels in file/folder paths, e.g. '_(?P<m1>\d+)_(?P<m2>\d+)\.txt$'.",
)
@click.option(
    "--xsec",
    default=None,
    help="Cross-section: a number in pb, or a CSV with label columns, xsec_pb or xsec_fb and "
    "optional uncertainties (docs/make-patch.md); stored in each patch's metadata.xsec, and "
    "native output's acceptances are scaled by it.",
)
@click.option(
    "--lumi",
    type=float,
    default=None,
    help="Native output: analysis luminosity in fb^-1 (e.g. 139).",
)
@click.option(
    "--template",
    default=None,
    metavar="PATCHSET[:NAME]",
    help="Template mode: copy the signal modifiers of an official patchset (nearest point, or NAME).",
)
@click.option(
    "--sample-name",
    default=None,
    help="Signal sample name; a format string with {name} and the labels.",
)
@click.option(
    "--name-prefix",
    default="signal",
    show_default=True,
    help="Patch names are PREFIX_<values> unless YIELDS has a name column.",
)
@click.option(
    "--mcstat",
    type=click.Choice(["staterror", "none"]),
    default="staterror",
    show_default=True,
    help="How stat_unc enters: a staterror shared with the channel's background, or not at all.",
)
@click.option("--drop-unlisted", is_flag=True, help="Remove every channel that gets no signal.")
@click.option(
    "--remove",
    "remove_channels",
    multiple=True,
    metavar="CHANNEL",
    help="Remove this channel (repeatable), e.g. validation regions.",
)
@click.option(
    "--hepdata",
    default=None,
    help="INSPIRE id of the analysis, e.g. ins1755298 (required by the PatchSet format).",
)
@click.option("--description", default=None, help="PatchSet description.")
@click.option(
    "--measurement",
    default=None,
    help="Measurement whose POI the signal scales (default: the first).",
)
@click.option(
    "--validate",
    "validate_mode",
    type=click.Choice(["fast", "full", "none"]),
    default="fast",
    show_default=True,
    help="fast: schema, digest, every patch's data, first workspace in full; full: every patched workspace in full.",
)
def make_patch(
    bkgonly: str,
    yields_path: str,
    output: str | None,
    per_point_dir: str | None,
    mapping: str | None,
    fmt: str | None,
    labels: str | None,
    point_pattern: str | None,
    xsec: str | None,
    lumi: float | None,
    template: str | None,
    sample_name: str | None,
    name_prefix: str,
    mcstat: str,
    drop_unlisted: bool,
    remove_channels: tuple[str, ...],
    hepdata: str | None,
    description: str | None,
    measurement: str | None,
    validate_mode: str,
) -> None:
    """Turn recasting-tool signal yields into JSON patches on BKGONLY.

    YIELDS is a tidy CSV/JSON table (one row per point x region x bin), or native tool
    output, one per grid point: a folder of SimpleAnalysis <Analysis>.txt files, a folder
    of MadAnalysis 5 Cutflows/ folders, or an index CSV listing them.  Signal goes into every mapped channel, control regions included.  Nothing
    is written unless everything validates.  See docs/make-patch.md.
    """
    from recast.patch import make_patchset, write_patch_files, write_patchset
    from recast.yields import read_yields

    if output is None and per_point_dir is None:
        raise click.UsageError("give -o/--output PATCHSET.json and/or --per-point-dir DIR")
    label_list = [s.strip() for s in labels.split(",") if s.strip()] if labels else None
    xsec_value = _xsec_option(xsec)
    xsec_table = _xsec_table(xsec_value, yields_path, fmt)
    native: dict[str, Any] = {
        "point_pattern": point_pattern,
        "xsec_pb": xsec_table[1],
        "lumi_ifb": lumi,
    }
    given = {k: v for k, v in native.items() if v is not None}
    df = read_yields(yields_path, format=fmt, labels=label_list, **given)
    if isinstance(xsec_value, float):
        from recast.yields import label_columns

        keys = df[label_columns(df)].drop_duplicates()
        xsec_table = (keys.assign(xsec_pb=xsec_value), xsec_table[1])
    template_path, template_point = _split_template(template)
    if hepdata is None and template_path is None:
        hepdata = _hepdata_from_cache(bkgonly)
    patchset = make_patchset(
        bkgonly,
        df,
        mapping=mapping,
        labels=label_list,
        measurement=measurement,
        template=template_path,
        template_point=template_point,
        sample_name=sample_name,
        name_prefix=name_prefix,
        mcstat=mcstat,
        drop_unlisted=drop_unlisted,
        remove=remove_channels,
        hepdata=hepdata,
        description=description,
        validate=validate_mode,
        progress=sys.stderr.isatty(),
        xsec=xsec_table[0],
    )
    n = len(patchset["patches"])
    if output is not None:
        write_patchset(patchset, output)
        click.echo(
            f"wrote {n} patches (labels {', '.join(patchset['metadata']['labels'])}) to {output}"
        )
    if per_point_dir is not None:
        files = write_patch_files(patchset, per_point_dir)
        click.echo(f"wrote {len(files)} patch files to {per_point_dir}")


# ---------------------------------------------------------------------------------------
# scan (issue: recastkit scan)
# ---------------------------------------------------------------------------------------


def _scan_split(values: tuple[str, ...] | str | None) -> list[str]:
    """``("A,B", "C")`` -> ``["A", "B", "C"]`` (repeatable and comma-separated options)."""
    if not values:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def _scan_bracket(text: str | None) -> Any:
    """``"LO,HI"`` -> ``("LO", "HI")``; :func:`recast.scan` checks the numbers."""
    return tuple(_scan_split(text)) if text else None


def _scan_inputs(
    source: str, patchset: str | None, regions: list[str], all_regions: bool, labels: Any
) -> tuple[Any, Any]:
    """The (bkgonly, patchset) arguments of recast.scan for the command-line inputs."""
    from pathlib import Path

    import recast
    from recast.errors import ScanError

    if patchset is not None:
        if regions or all_regions:
            raise ScanError(
                "--region / --all-regions choose likelihoods of a fetched source; with "
                "BKGONLY PATCHSET give neither"
            )
        from recast.store import entry_of

        for path in (source, patchset):  # files inside the cache: check the entry first
            if Path(path).exists() and entry_of(path) is not None:
                recast.fetch(Path(path).parent)
        return source, patchset
    if Path(source).is_file() and not _is_archive(source):
        raise ScanError(
            f"{source}: give the patchset (or the folder of patch.<name>.json files) after "
            "the background-only workspace: recastkit scan BkgOnly.json patchset.json"
        )
    if all_regions and regions:
        raise ScanError("give either --region or --all-regions, not both")
    if all_regions or regions:
        table = recast.likelihoods(source, labels=labels)
        available = [str(n) for n in table["name"]]
        if all_regions:
            with_signal = table[table["format"] != "bkgonly_only"]
            regions = [str(n) for n in with_signal["name"]]
            if not regions:
                raise ScanError(f"{source}: no likelihood with signal patches")
        unknown = [r for r in regions if r not in available]
        if unknown:
            raise ScanError(
                f"{source}: unknown region {', '.join(map(repr, unknown))}; available: "
                f"{', '.join(available)}"
            )
        loaded = [recast.load_likelihood(source, r, labels=labels) for r in regions]
        return (loaded if len(loaded) > 1 else loaded[0]), None
    return recast.load_likelihood(source, None, labels=labels), None


def _is_archive(path: str) -> bool:
    """A local .tar.gz / .tgz / .tar / .zip (a source, like the ones `fetch` takes)."""
    import tarfile

    from recast._formats import sniff_archive

    return sniff_archive(path) is not None or tarfile.is_tarfile(path)


@main.command("scan")
@click.argument("source", metavar="BKGONLY_OR_SOURCE")
@click.argument(
    "patchset", metavar="[PATCHSET_OR_DIR]", required=False, type=click.Path(exists=True)
)
@click.option(
    "--region",
    "regions",
    multiple=True,
    metavar="NAME",
    help="Likelihood of a multi-region record (repeat or comma-separate; e.g. RegionA).",
)
@click.option("--all-regions", is_flag=True, help="Scan every likelihood of the record.")
@click.option("--points", metavar="A,B,...", help="Scan only these patch names.")
@click.option("--where", metavar="QUERY", help='pandas query on the labels, e.g. "m1 > 500".')
@click.option("--mu", type=float, default=1.0, show_default=True, help="Signal strength tested.")
@click.option("--upper-limit", is_flag=True, help="Also 95% CL upper limits on mu (slower).")
@click.option(
    "--significance",
    is_flag=True,
    help="Also the discovery p-value and significance (q0): p0_obs, z_obs, p0_exp, z_exp.",
)
@click.option(
    "--bracket",
    metavar="LO,HI",
    help="With --upper-limit: search the limits in [LO, HI] only (default: from [0, 1], "
    "widened up to the POI's upper bound; a curve above 0.05 there gets the limit inf).",
)
@click.option(
    "--expected",
    type=click.Choice(["aposteriori", "apriori"]),
    default="aposteriori",
    show_default=True,
    help="Expected band from the fit to data, or from the nominal model.",
)
@click.option(
    "--test-stat",
    type=click.Choice(["qtilde", "q"]),
    default="qtilde",
    show_default=True,
    help="Test statistic.",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), help="Worker processes [default: all cores]."
)
@click.option(
    "--executor",
    type=click.Choice(["process", "dask"]),
    default="process",
    show_default=True,
    help="Local process pool, or dask.distributed (needs recastkit[dask]).",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="Dask scheduler (tcp://host:8786); without it --executor dask starts a local cluster.",
)
@click.option("--chunk-size", type=click.IntRange(min=1), help="Points per task.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Results file (.csv, .json or .jsonl), written point by point; default: CSV on stdout.",
)
@click.option("--resume", is_flag=True, help="Skip the points already in the output file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@click.option(
    "--best-expected",
    is_flag=True,
    help="Also keep, per point, the region with the lowest expected CLs "
    "(written to <output>_best.<ext>, or printed instead of the full table).",
)
@click.option("--labels", metavar="A,B,...", help="Names of the point values (label columns).")
@click.option("--measurement", metavar="NAME", help="Measurement to use [default: the first].")
@click.option(
    "--xsec",
    "xsec_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Cross-section CSV (labels, xsec_fb or xsec_pb, optional uncertainties): adds xsec, "
    "xsec_ul_* (with --upper-limit) and cls_obs_up/down columns [default: the patches' "
    "metadata.xsec].",
)
@click.option(
    "--no-verify", is_flag=True, help="Do not check the patchset's digest against the BkgOnly."
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--calctype",
    type=click.Choice(["asymptotics", "toybased"]),
    default="asymptotics",
    show_default=True,
    help="Asymptotic formulae, or pseudo-experiments (adds uncertainty columns).",
)
@click.option(
    "--ntoys",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Toys per hypothesis and point (--calctype toybased).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the toys."
)
@click.option(
    "--toys-below-events",
    type=click.FloatRange(min=0.0, min_open=True),
    metavar="X",
    help="Toys only where a bin with signal expects < X background events (else asymptotics).",
)
def scan_command(
    source: str,
    patchset: str | None,
    regions: tuple[str, ...],
    all_regions: bool,
    points: str | None,
    where: str | None,
    mu: float,
    upper_limit: bool,
    significance: bool,
    bracket: str | None,
    expected: str,
    test_stat: str,
    jobs: int | None,
    executor: str,
    scheduler: str | None,
    chunk_size: int | None,
    output: str | None,
    resume: bool,
    overwrite: bool,
    best_expected: bool,
    labels: str | None,
    measurement: str | None,
    xsec_file: str | None,
    no_verify: bool,
    no_progress: bool,
    calctype: str,
    ntoys: int,
    seed: int,
    toys_below_events: float | None,
) -> None:
    """CLs at --mu for every point of a signal grid, in parallel.

    \b
    Inputs, one of:
      BKGONLY PATCHSET       BkgOnly.json + patchset.json (published, or from make-patch)
      BKGONLY DIR            BkgOnly.json + folder of per-point patch.<name>.json files
      SOURCE [--region R]    a fetched record (INSPIRE id, DOI, archive, folder)

    \b
    Examples:
      recastkit scan BkgOnly.json patchset.json -o results.csv
      recastkit scan ins1748602 --all-regions --best-expected -o sbottom.csv
      recastkit scan ins1755298 --where "m1 >= 500" -j 8 -o results.csv --resume

    Each point is appended to the output as soon as its chunk returns, so Ctrl-C
    keeps every finished point; run the same command with --resume to continue.
    """
    import contextlib
    import gc
    import os

    from recast._scan_worker import THREAD_ENV

    # One BLAS / OpenMP / numba thread in this process too (it computes with -j 1, and
    # its workers inherit the environment), unless the user set these variables: set
    # before numpy is first imported, when they take effect.
    for key, value in THREAD_ENV.items():
        os.environ.setdefault(key, value)

    from recast._scan_worker import default_jobs, workers_started_early

    early = contextlib.ExitStack()
    n_workers = jobs or default_jobs()
    if executor == "process" and n_workers > 1:
        # the local workers start now (about a second each: interpreter, numba, kernels),
        # while this process imports pandas and reads the patchset; the scan takes them
        # when it needs that many workers, else they stop when the command ends
        early.enter_context(workers_started_early(n_workers))
    with early:
        _scan_command_body(
            source, patchset, regions, all_regions, points, where, mu, upper_limit,
            significance, bracket, expected, test_stat, jobs, executor, scheduler,
            chunk_size, output, resume, overwrite, best_expected, labels, measurement,
            xsec_file, no_verify, no_progress, calctype, ntoys, seed, toys_below_events,
        )  # fmt: skip
    # the command is done: the interpreter's final garbage collection of every object
    # still alive (pandas, numpy...) would only delay the exit
    gc.freeze()


def _scan_command_body(
    source: str,
    patchset: str | None,
    regions: tuple[str, ...],
    all_regions: bool,
    points: str | None,
    where: str | None,
    mu: float,
    upper_limit: bool,
    significance: bool,
    bracket: str | None,
    expected: str,
    test_stat: str,
    jobs: int | None,
    executor: str,
    scheduler: str | None,
    chunk_size: int | None,
    output: str | None,
    resume: bool,
    overwrite: bool,
    best_expected: bool,
    labels: str | None,
    measurement: str | None,
    xsec_file: str | None,
    no_verify: bool,
    no_progress: bool,
    calctype: str,
    ntoys: int,
    seed: int,
    toys_below_events: float | None,
) -> None:
    import contextlib
    import os
    import signal
    from pathlib import Path

    import recast
    from recast.errors import ScanError
    from recast.scan import ScanInterrupted, dask_client
    from recast.scan import scan as scan_grid

    if scheduler and executor != "dask":
        raise ScanError("--scheduler is the address of a Dask scheduler: add --executor dask")
    label_list = _scan_split(labels) or None
    bkgonly, patchset_arg = _scan_inputs(
        source, patchset, _scan_split(regions), all_regions, label_list
    )

    terminated = []

    def _on_sigterm(signum: int, frame: Any) -> None:
        terminated.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        with contextlib.ExitStack() as stack:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())  # log lines above the bar
            pool = None
            if executor == "dask":
                # distributed logs INFO lines in every process it starts: show them with -v
                # only (the environment reaches the worker processes too)
                level = logging.getLevelName(max(logging.getLogger().level, logging.INFO))
                os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", level.lower())
                client = stack.enter_context(dask_client(scheduler, n_workers=jobs))
                pool = client.get_executor()
            try:
                df = scan_grid(
                    bkgonly,
                    patchset_arg,
                    mu=mu,
                    jobs=jobs,
                    executor=pool,
                    upper_limit=upper_limit,
                    significance=significance,
                    bracket=_scan_bracket(bracket),
                    expected=expected,
                    test_stat=test_stat,
                    points=_scan_split(points) or None,
                    where=where,
                    output=output,
                    resume=resume,
                    overwrite=overwrite,
                    progress=not no_progress,
                    chunk_size=chunk_size,
                    verify=not no_verify,
                    labels=label_list if patchset_arg is not None else None,
                    measurement=measurement,
                    xsec=xsec_file,
                    calctype=calctype,
                    ntoys=ntoys,
                    seed=seed,
                    toys_below_events=toys_below_events,
                )
            except ScanInterrupted as err:
                where_rows = f" are in {err.output}" if err.output else " were not saved (no -o)"
                click.echo(
                    f"Interrupted: {err.done} of {err.total} points done; the finished rows"
                    f"{where_rows}."
                    + (" Run the same command with --resume to continue." if err.output else ""),
                    err=True,
                )
                sys.exit(143 if terminated else 130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    best = None
    if best_expected:
        if "region" in df.columns:
            best = recast.best_expected(df)
        else:
            click.echo("--best-expected: one likelihood only, nothing to combine", err=True)
    if output is not None and best is not None:
        from recast.scan import write_results

        out = Path(output)
        best_path = write_results(best, out.with_name(f"{out.stem}_best{out.suffix}"))
        click.echo(f"best expected region per point: {best_path}", err=True)
    if output is None:
        click.echo((best if best is not None else df).to_csv(index=False), nl=False)

    s = df.attrs.get("summary", {})
    statuses = s.get("statuses", {})
    failed_kinds = {k: v for k, v in statuses.items() if k not in ("ok", "no_signal")}
    detail = ", ".join(f"{v} {k}" for k, v in sorted(failed_kinds.items()))
    wall = s.get("wall_seconds", float("nan"))
    click.echo(
        f"scan: {s.get('points', len(df))} points: {s.get('ok', 0)} ok, "
        f"{s.get('failed', 0)} failed{f' ({detail})' if detail else ''}, "
        f"{s.get('no_signal', 0)} no_signal; computed {s.get('computed', 0)} in {wall:.1f} s"
        + (f"; results in {output}" if output else ""),
        err=True,
    )
    n_error = int(statuses.get("error", 0))
    if n_error:
        click.echo(
            f"Error: {n_error} point(s) have status error (see their message); "
            + (
                "run the same command with --resume to compute them again"
                if output
                else "write the results with -o FILE, then --resume computes only those again"
            ),
            err=True,
        )
        sys.exit(1)


# ---------------------------------------------------------------------------------------
# contour (issue: exclusion contours and plots)
# ---------------------------------------------------------------------------------------


@main.command("contour")
@click.argument(
    "results", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=str)
)
@click.option("-x", "x", required=True, help="Result column on the horizontal axis (a label).")
@click.option(
    "-y",
    "y",
    default=None,
    help="Result column on the vertical axis; without it, a Brazil plot of CLs against x.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=str),
    default=None,
    help="Plot file: .png, .pdf or .svg.",
)
@click.option(
    "--export",
    "export",
    type=click.Path(dir_okay=False, writable=True, path_type=str),
    default=None,
    help="Write the contour points as a HEPData-style table: .csv or .json (with -x only: "
    "the CLs curves and crossings, .csv).",
)
@click.option(
    "--method",
    type=click.Choice(["linear", "rbf"]),
    default="rbf",
    show_default=True,
    help="Interpolation of the significance: Delaunay-linear or radial basis functions.",
)
@click.option("--level", type=float, default=0.05, show_default=True, help="CLs level.")
@click.option(
    "--resolution",
    type=click.IntRange(min=10),
    default=300,
    show_default=True,
    help="Interpolation grid nodes per axis.",
)
@click.option("--logx", is_flag=True, help="Log x axis (interpolate in log10 x).")
@click.option("--logy", is_flag=True, help="Log y axis (interpolate in log10 y).")
@click.option(
    "--forbidden",
    default=None,
    help='Kinematically forbidden region to mask, e.g. "m_N2 >= m_sbottom".',
)
@click.option("--where", default=None, help='Select rows first, e.g. "m_N1 == 60".')
@click.option(
    "--best-expected",
    is_flag=True,
    help="Several regions per point: keep the one with the lowest expected CLs.",
)
@click.option(
    "--overlay",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=str),
    help="Published contour to overlay (HEPData CSV); repeatable.",
)
@click.option(
    "--overlay-label",
    "overlay_labels",
    multiple=True,
    help="Legend text of an overlay; repeat once per --overlay, in order.",
)
@click.option(
    "--smoothing",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="RBF smoothing for coarse or noisy grids (as HistFitter's harvestToContours); 0: exact.",
)
@click.option(
    "--no-extend",
    is_flag=True,
    help="Stop the contours at the outermost points instead of the grid edge / boundary.",
)
@click.option("--band2", is_flag=True, help="Also draw the expected +-2 sigma band.")
@click.option("--unit", default="GeV", show_default=True, help="Unit in the axis labels.")
@click.option(
    "--labels",
    "axis_labels",
    multiple=True,
    metavar="COLUMN=TEXT",
    help=r"Axis label of a column, mathtext allowed, e.g. 'm1=$m(\tilde{t}_1)$'; repeatable.",
)
@click.option("--xlabel", default=None, help="x-axis label; the unit is appended unless given.")
@click.option("--ylabel", default=None, help="y-axis label; the unit is appended unless given.")
@click.option("--title", default=None, help="Plot title.")
@click.option("--analysis", default=None, help="Analysis name for the label block.")
@click.option(
    "--sqrt-s", type=float, default=None, help="sqrt(s) in TeV [default: from --overlay]."
)
@click.option("--lumi", type=float, default=None, help="Integrated luminosity in fb^-1.")
@click.option("--no-label-block", is_flag=True, help="No label block (analysis, sqrt(s), CL).")
def contour_command(
    results: str,
    x: str,
    y: str | None,
    output: str | None,
    export: str | None,
    method: str,
    level: float,
    resolution: int,
    logx: bool,
    logy: bool,
    forbidden: str | None,
    where: str | None,
    best_expected: bool,
    overlay: tuple[str, ...],
    overlay_labels: tuple[str, ...],
    smoothing: float,
    no_extend: bool,
    band2: bool,
    unit: str,
    axis_labels: tuple[str, ...],
    xlabel: str | None,
    ylabel: str | None,
    title: str | None,
    analysis: str | None,
    sqrt_s: float | None,
    lumi: float | None,
    no_label_block: bool,
) -> None:
    """Exclusion contours and plots from scan results.

    RESULTS is the table written by `recastkit scan -o` (.csv, .json or .jsonl).  With -x
    and -y: observed and expected contours (and the +-1, +-2 sigma ones) in the x-y plane,
    plotted with -o and written as numbers with --export.  With -x only: CLs against x
    (Brazil plot) and the masses where CLs crosses the level.

    \b
    Example:
      recastkit contour results.csv -x m_sbottom -y m_N2 --where "m_N1 == 60" \\
          --best-expected --forbidden "m_N2 >= m_sbottom" -o exclusion.png \\
          --export contour.csv --overlay HEPData-ins1748602-v1-M60_Obs.csv
    """
    # plots are drawn on matplotlib.figure.Figure objects: no pyplot, no backend switch
    from recast import contour as rc

    table = rc.read_results(results)
    if best_expected:
        from recast import best_expected as pick_best

        table = pick_best(table)
        if "region" in table.columns:
            counts = table["region"].astype(str).value_counts().sort_index()
            click.echo(
                "best expected region per point: "
                + ", ".join(f"{k} {v}" for k, v in counts.items())
            )
    labels_map = {}
    for item in axis_labels:
        column, sep, text = item.partition("=")
        if not sep or not column.strip():
            raise click.UsageError(f"--labels {item!r}: write COLUMN=TEXT, e.g. 'm1=$m(t)$'")
        labels_map[column.strip()] = text
    if y is None:
        if overlay or forbidden or logy or band2:
            raise click.UsageError(
                "--overlay, --forbidden, --logy and --band2 need a 2-D plane: give -y"
            )
        crossings = rc.find_crossings(table, x, level=level, where=where, logx=logx)
        if output:
            rc.plot_brazil(
                table, x, level=level, where=where, logx=logx, unit=unit or None,
                xlabel=xlabel if xlabel is not None else labels_map.get(x),
                title=title, analysis=analysis, sqrt_s=sqrt_s, lumi=lumi,
                label_block=not no_label_block, output=output,
            )  # fmt: skip
            click.echo(f"wrote {output}")
        if export:
            rc.export_brazil(table, x, export, level=level, where=where, logx=logx)
            click.echo(f"wrote {export}")
        for name, values in crossings.items():
            shown = ", ".join(f"{v:.6g}" for v in values) or "none"
            click.echo(f"{name}: CLs = {level:g} at {x} = {shown}")
        return
    contours = rc.exclusion_contour(
        table, x, y, level=level, method=method, logx=logx, logy=logy,
        forbidden=forbidden, where=where, resolution=resolution,
        rbf_smoothing=smoothing, extend=not no_extend,
    )  # fmt: skip
    click.echo(f"{len(contours.points)} points in the {x}-{y} plane, {method} interpolation")
    for name, pieces in contours.curves.items():
        sizes = "+".join(str(len(p)) for p in pieces) or "0"
        click.echo(f"{name}: {len(pieces)} piece(s), {sizes} vertices")
    if export:
        rc.export_contours(contours, export)
        click.echo(f"wrote {export}")
    if output:
        rc.plot_exclusion(
            contours, band2=band2, overlay=list(overlay) or None,
            overlay_label=list(overlay_labels) or None,
            unit=unit or None, xlabel=xlabel, ylabel=ylabel, labels=labels_map or None,
            title=title, analysis=analysis, sqrt_s=sqrt_s, lumi=lumi,
            label_block=not no_label_block, output=output,
        )  # fmt: skip
        click.echo(f"wrote {output}")


# ---------------------------------------------------------------------------------------
# combine (issue: recastkit combine)
# ---------------------------------------------------------------------------------------


@main.command("combine")
@click.argument("workspaces", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="Combined workspace."
)
@click.option(
    "--patchset",
    "patchsets",
    multiple=True,
    type=click.Path(exists=True),
    help="Signal patchset (or folder of patch.<name>.json) of each input, in order; repeat.",
)
@click.option(
    "--patchset-output",
    type=click.Path(dir_okay=False),
    help="Combined patchset [default: <output stem>_patchset.json].",
)
@click.option(
    "--mapping",
    type=click.Path(exists=True, dir_okay=False),
    help='Renames / correlations (JSON or TOML): {"ANA1:JES_1": "JES_1", ...}, [settings].',
)
@click.option(
    "--prefix",
    "prefixes",
    multiple=True,
    metavar="NAME",
    help="Name of each input (repeat, in order); clashing channels become NAME_<channel>.",
)
@click.option("--always-prefix", is_flag=True, help="Prefix every channel with its input's name.")
@click.option(
    "--drop-channel",
    "drop_channels",
    multiple=True,
    metavar="[ANA:]CHANNEL",
    help="Leave this channel out (repeatable).",
)
@click.option(
    "--join",
    type=click.Choice(["exact", "inner", "outer"]),
    default="exact",
    show_default=True,
    help="Points in some patchsets only: an error, left out, or kept.",
)
@click.option(
    "--correlate",
    default="auto",
    show_default=True,
    metavar="auto|none|A,B,...",
    help="Share same-named parameters with the same constraint (auto), none, or only these.",
)
@click.option("--poi", default=None, help="Name of the combined POI [default: the first's].")
@click.option("--hepdata", default=None, help="INSPIRE id for the combined patchset.")
def combine_command(
    workspaces: tuple[str, ...],
    output: str,
    patchsets: tuple[str, ...],
    patchset_output: str | None,
    mapping: str | None,
    prefixes: tuple[str, ...],
    always_prefix: bool,
    drop_channels: tuple[str, ...],
    join: str,
    correlate: str,
    poi: str | None,
    hepdata: str | None,
) -> None:
    """Combine the likelihoods of several analyses into one workspace (and patchset).

    \b
    Example:
      recastkit combine SRee_bkgonly.json SRmm_bkgonly.json -o combined.json \\
          --patchset ee_patchset.json --patchset mm_patchset.json

    Nothing is written unless the combination (and every combined patch) validates.
    See docs/combine.md.
    """
    from pathlib import Path

    from recast.combine import combine_likelihoods, write_combination

    if patchset_output is not None and not patchsets:
        raise click.UsageError("--patchset-output needs --patchset (one per input)")
    result = combine_likelihoods(
        list(workspaces),
        patchsets=list(patchsets) or None,
        join=join,
        prefixes=list(prefixes) or None,
        always_prefix=always_prefix,
        correlate=correlate if correlate in ("auto", "none") else _scan_split(correlate),
        mapping=mapping,
        drop_channels=drop_channels,
        poi=poi,
        hepdata=hepdata,
        progress=sys.stderr.isatty(),
    )
    if result.patchset is not None and patchset_output is None:
        out = Path(output)
        patchset_output = str(out.with_name(f"{out.stem}_patchset.json"))
    s = result.summary
    for ana, rows in s.groupby("analysis", sort=False):
        ch = rows[rows["kind"] == "channel"]
        par = rows[rows["kind"] == "parameter"]
        counts = par["status"].value_counts()
        click.echo(
            f"{ana} ({rows['source'].iloc[0]}): {int((ch['status'] != 'dropped').sum())} "
            f"channel(s) ({int((ch['status'] == 'prefixed').sum())} prefixed, "
            f"{int((ch['status'] == 'dropped').sum())} dropped); {len(par)} parameter(s): "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
        )
    changed = s[s["status"].isin(["renamed", "kept_apart"])]
    for r in changed.itertuples(index=False):
        click.echo(f"  {r.analysis}:{r.name} -> {r.combined_name} ({r.status}: {r.note})")
    written = write_combination(result, output, patchset_output=patchset_output)
    ws = result.workspace
    click.echo(
        f"wrote {written[0]}: {len(ws['channels'])} channels, "
        f"{len(ws['measurements'][0]['config']['parameters'])} parameter settings, "
        f"POI {ws['measurements'][0]['config']['poi']}"
    )
    if result.patchset is not None:
        pts = result.points
        left = int((~pts["kept"].astype(bool)).sum())
        click.echo(
            f"wrote {written[1]}: {len(result.patchset['patches'])} points ({join} join"
            + (f"; {left} point(s) left out" if left else "")
            + ")"
        )


# ---------------------------------------------------------------------------------------
# demo (issue: bundled example)
# ---------------------------------------------------------------------------------------


@main.command("demo")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(file_okay=False, writable=True),
    default="recastkit-demo",
    show_default=True,
    help="Folder for results.csv, patchset.json, exclusion.png, exclusion_contours.csv.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes of the scan (default: the usable cores; 1 = in-process).",
)
@click.option("--small", is_flag=True, help="Scan a coarse 13-point sub-grid only (quick check).")
def demo_command(output: str, jobs: int | None, small: bool) -> None:
    """Run the whole chain on the bundled toy analysis, offline.

    \b
    1. fetch      the bundled HEPData archive (fixtures/), through a cache in OUTPUT/cache
    2. make-patch signal patches for a new model from SimpleAnalysis output (grids/)
    3. scan       CLs for every grid point, in parallel
    4. contour    exclusion contour with its expected band -> OUTPUT/exclusion.png
    """
    import time

    import pandas as pd

    from recast.demo import run_demo

    start = time.perf_counter()
    results = run_demo(
        output, jobs=jobs, small=small, progress=True, echo=lambda text: click.echo(text, err=True)
    )
    wall = time.perf_counter() - start
    columns = [
        c
        for c in ("m1", "m2", "cls_obs", "cls_exp_m1", "cls_exp", "cls_exp_p1", "status")
        if c in results.columns
    ]
    table = results[columns].copy()
    table["excluded"] = (results["cls_obs"] < 0.05).map({True: "yes", False: "no"})
    with pd.option_context("display.max_rows", None, "display.width", 120):
        click.echo(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    ok = results["status"] == "ok"
    n_obs = int((ok & (results["cls_obs"] < 0.05)).sum())
    n_exp = int((ok & (results["cls_exp"] < 0.05)).sum())
    click.echo(
        f"\n{len(results)} points ({int(ok.sum())} ok): {n_obs} excluded at 95% CL "
        f"(observed), {n_exp} expected; {wall:.1f} s in all"
    )
    timings = results.attrs.get("timings", {})
    if timings:
        click.echo("  " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    files = results.attrs.get("files")
    if files is not None:
        click.echo("Files:")
        for label, path in (
            ("results", files.results),
            ("patchset", files.patchset),
            ("plot", files.plot),
            ("contours", files.contours),
            ("likelihood", files.likelihood),
        ):
            click.echo(f"  {label:<10} {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
