"""The ``genbench`` command line: one thin function per command over the Python API.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, no traceback); 1 a failure
of the run itself (and, for ``genbench check``, a regression). ``GENBENCH_DEBUG=1`` shows
tracebacks of unexpected errors.

Light commands stay light: ``--help``, ``--version``, ``results`` (table, csv, json, seeds) and
``ls`` (once its cached listing is filled, ``genbench.listing``) never import torch; each command
imports what it needs inside its function.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from typer.exceptions import Abort, Exit

try:  # typer >= 0.20 vendors click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer with click as a dependency
    from click.exceptions import ClickException

from genbench import __version__
from genbench.errors import GenbenchError, UsageError
from genbench.executors import Executor

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark generative models: train or load, sample, evaluate, publish leaderboards.")

KINDS = ("datasets", "features", "metrics", "models", "samplers", "suites")


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"
    latex = "latex"
    parquet = "parquet"


class Aggregate(str, Enum):
    none = "none"
    seeds = "seeds"


class BenchTarget(str, Enum):
    metrics = "metrics"
    images = "images"
    sampler = "sampler"
    all = "all"


def fail(message: str, code: int) -> None:
    typer.echo(f"genbench: error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn genbench's errors into one line on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenbenchError as e:
            fail(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; finished records are kept, rerun the same command to resume", 130)
        except MemoryError:
            fail("out of memory; lower --n or the batch size, or use a machine with more memory", 1)
        except OSError as e:
            if os.environ.get("GENBENCH_DEBUG"):
                raise
            fail(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ") + "; check the path and free disk space", 1)

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"genbench {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print genbench's version and exit.")) -> None:
    """Benchmark generative models: train or load, sample, evaluate, publish leaderboards."""


def parse_seeds(text: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` -> [0, 1, 2] (checked again, with the suite's, at expansion)."""
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--seeds {text!r} must be a comma list of integers, e.g. --seeds 0,1,2") from None


@app.command()
@handle_errors
def run(
    suite: str = typer.Option("default", "--suite", "-s", help="Built-in suite name or path to a suite YAML (genbench ls suites)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory for results.sqlite and leaderboard.md [default: genbench-runs/SUITE]."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Run every grid of the suite with this one seed."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma list of seeds for every grid, e.g. 0,1,2: each trains and samples on its own; leaderboards show mean ± std."),
    publish: bool = typer.Option(False, "--publish", help="Also write leaderboards/<suite>.md and .csv."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache directory [default: $GENBENCH_CACHE or ~/.cache/genbench]."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Directory holding dataset files (Fashion-MNIST idx.gz, torchvision sets)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Feature-extractor weights file (e.g. Inception for FID)."),
    rerun: bool = typer.Option(False, "--rerun", help="Recompute specs already stored as ok."),
    executor: Executor = typer.Option(Executor.local, "--executor", help="Where specs run: local, or ray (pip install 'genbench[ray]'): one Ray task per spec."),
    address: Optional[str] = typer.Option(None, "--address", help="With --executor ray: the cluster to join, e.g. ray://HOST:10001 or HOST:6379 [default: $RAY_ADDRESS, else a local Ray]."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-spec lines; notes, failures, warnings and the summary only."),
    log_json: Optional[Path] = typer.Option(None, "--log-json", help="Append one JSON object per stage of each spec to FILE (spec_started, trained, sampled, evaluated, failed, skipped, reused)."),
) -> None:
    """Run a benchmark suite end to end. Example: genbench run --suite smoke --out runs/smoke --seeds 0,1,2"""
    from genbench.api import run_suite

    if seed is not None and seeds is not None:
        raise UsageError("give --seed or --seeds, not both (--seeds 0,1,2 runs every seed)")
    summary = run_suite(suite, out=out, device=device, seed=seed, seeds=parse_seeds(seeds), publish=publish,
                        cache_dir=cache, data_root=data_root, weights=weights, progress=progress, rerun=rerun,
                        executor=executor.value, quiet=quiet, log_json=log_json, address=address)
    for w in summary.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"{summary.suite}: {summary.count('ok')} ok, {summary.count('failed')} failed, "
               f"{summary.count('skipped')} skipped ({summary.reused} reused, {summary.ran} run); "
               f"results in {summary.out / 'results.sqlite'}", err=True)
    if not quiet:
        typer.echo(f"leaderboard: {summary.leaderboard}", err=True)
        for p in summary.published:
            typer.echo(f"published: {p} and {p.with_suffix('.csv')}", err=True)
    if summary.count("ok") == 0 and summary.records:
        fail("no run of the suite succeeded; see the errors above", 1)


@app.command("eval")
@handle_errors
def eval_cmd(
    input1: str = typer.Argument(..., help="Generated set: image folder, .npz/.npy, SMILES file (.smi/.txt/.csv), or dataset:NAME[:SPLIT]."),
    input2: str = typer.Argument(..., help="Reference set: as INPUT1, or a statistics file from `genbench stats`."),
    features: str = typer.Option("auto", "--features", "-f", help="raw, inception, vgg16, domain:DATASET, dinov2[:ARCH], clip[:ARCH], sfid, or auto."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Feature-extractor weights file."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="Comma list from fid,kid,is,precision,recall,density,coverage,fd_inf,vendi,authpct,nn_ratio,cmmd; for molecules validity,unique,novelty,filters,intdiv,fcd,snn,frag,scaf [default: all the default metrics the features allow]."),
    n: Optional[int] = typer.Option(None, "--n", min=2, help="Use at most N samples of each input (seeded subset)."),
    seed: int = typer.Option(2020, "--seed", help="Seed of the subsets and of KID/IS/bootstrap."),
    bootstrap: int = typer.Option(0, "--bootstrap", min=0, help="Bootstrap resamples for 95% confidence intervals (0: none)."),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", min=2, help="KID subset size (min(n1, n2, this) is used and reported)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Feature-extraction batch size."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Directory holding dataset files."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
    fast: bool = typer.Option(False, "--fast", help="Opt-in fast path of the feature network (channels_last; bfloat16 autocast on a GPU or an AMX/AVX512-BF16 CPU): not the exact numbers, recorded as fast_path (genbench bench images prints its deviation)."),
) -> None:
    """Metrics between two sample sets. Example: genbench eval samples/ dataset:digits:test --features domain:digits --json"""
    from genbench.api import evaluate
    from genbench.metrics.base import METRICS

    names = None
    if metrics:
        names = [m.strip() for m in metrics.split(",") if m.strip()]
        for m in names:
            METRICS.get(m)
    result = evaluate(input1, input2, features=features, weights=weights, metrics=names, n=n, seed=seed, device=device,
                      batch_size=batch_size, bootstrap=bootstrap, kid_subset_size=kid_subset_size, data_root=data_root,
                      fast=fast)
    if as_json:
        typer.echo(json.dumps(result, sort_keys=True, default=float))
        return
    for w in result.get("warnings", []):
        typer.echo(f"warning: {w}", err=True)
    for k, v in result.items():
        if k not in ("warnings", "info", "ci"):
            ci = result.get("ci", {}).get(k)
            typer.echo(f"{k:>18}: {v}" + (f"  (95% CI {ci[0]:.6g} .. {ci[1]:.6g})" if ci else ""))


@app.command()
@handle_errors
def results(
    run_dir: Path = typer.Argument(..., help="Run directory (or its results.sqlite)."),
    fmt: Format = typer.Option(Format.table, "--format", help="Output format (parquet needs --out and pyarrow)."),
    aggregate: Aggregate = typer.Option(Aggregate.none, "--aggregate", help="seeds: one row per configuration, each metric's mean ± std across seeds (as the leaderboard shows it)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
) -> None:
    """Print what a run stored. Example: genbench results genbench-runs/default --aggregate seeds --format latex"""
    if fmt is Format.parquet and out is None:
        raise UsageError("--format parquet writes a binary file: add --out FILE.parquet")
    if aggregate is Aggregate.none and fmt is not Format.parquet:
        from genbench.report.tables import render_results

        return _emit(render_results(run_dir, fmt.value), out)
    from genbench.report.tables import aggregate_seeds, frame_to_parquet
    from genbench.store import load_results

    df = load_results(run_dir)
    df = aggregate_seeds(df) if aggregate is Aggregate.seeds else df
    if fmt is Format.parquet:
        frame_to_parquet(df, out)
        typer.echo(f"{len(df)} rows written to {out}", err=True)
    elif fmt in (Format.markdown, Format.latex):  # these formats show mean ± std across seeds already
        from genbench.report.tables import render_results

        _emit(render_results(run_dir, fmt.value), out)
    elif fmt is Format.csv:
        _emit(df.to_csv(index=False), out)
    elif fmt is Format.json:
        _emit(df.to_json(orient="records", indent=1), out)
    else:
        _emit(seed_table(df), out)


def seed_table(agg) -> str:
    """An ``aggregate_seeds`` frame for the terminal: each metric as ``mean ± std`` across seeds."""
    from genbench.report.tables import SEED_STD_SUFFIX

    if agg.empty:
        return "(no ok records)"
    metrics = [c for c in agg.columns if c + SEED_STD_SUFFIX in agg.columns]
    shown = agg[[c for c in agg.columns if c not in metrics and not c.endswith(SEED_STD_SUFFIX)]].copy()
    for m in metrics:
        std = agg[m + SEED_STD_SUFFIX]
        shown[m] = [("–" if v != v else f"{v:.4g}" + ("" if s != s else f" ± {s:.2g}")) for v, s in zip(agg[m], std)]
    drop = [c for c in ("suite", "family", "weights_sha256") if c in shown.columns]
    shown = shown.drop(columns=drop).astype(object)
    return shown.where(shown.notna(), "–").to_string(index=False)


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text)
        return
    from genbench.cache import atomic_write_bytes

    atomic_write_bytes(out, (text.rstrip("\n") + "\n").encode())
    typer.echo(f"written to {out}", err=True)


@app.command()
@handle_errors
def leaderboard(
    run_dir: Path = typer.Argument(..., help="Run directory (or its results.sqlite)."),
    publish: bool = typer.Option(False, "--publish", help="Also write <publish-dir>/<suite>.md, .csv and figures."),
    publish_dir: Path = typer.Option(Path("leaderboards"), "--publish-dir", help="Where --publish writes."),
) -> None:
    """Regenerate a run's leaderboard (Markdown, CSV, figures) from its store, rerunning nothing. Example: genbench leaderboard genbench-runs/default --publish"""
    from genbench.report.leaderboard import write_leaderboard_from_store

    for path in write_leaderboard_from_store(run_dir, publish_dir if publish else None):
        typer.echo(f"leaderboard: {path}", err=True)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _stored(run_dir: Path):
    from genbench.store import ResultsStore

    return ResultsStore(run_dir, create=False).records()


@app.command()
@handle_errors
def compare(
    dir_a: Path = typer.Argument(..., help="Run directory A (or its results.sqlite)."),
    dir_b: Path = typer.Argument(..., help="Run directory B, compared with A (B - A)."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
) -> None:
    """Per spec in both stores and metric: both values, B - A, and whether the difference is significant
    (across seeds with two or more, else by the bootstrap intervals). Example: genbench compare runs/main runs/branch"""
    from genbench.gate import compare as compare_runs, json_rows, text_table

    table = compare_runs(_stored(dir_a), _stored(dir_b))
    if as_json:
        typer.echo(json.dumps({"a": str(dir_a), "b": str(dir_b), "rows": json_rows(table)}, sort_keys=True))
        return
    typer.echo(text_table(table))
    typer.echo(f"A = {dir_a}, B = {dir_b}; better: which side the metric's direction favours; significant: "
               "Welch's t-test across seeds (p < 0.05) or non-overlapping 95% intervals; n/a: no interval", err=True)


@app.command()
@handle_errors
def baseline(
    run_dir: Path = typer.Argument(..., help="Run directory (or its results.sqlite) to take the baseline from."),
    out: Path = typer.Option(..., "--out", "-o", help="Baseline file to write (JSON)."),
) -> None:
    """Write a baseline (JSON) from a run, for `genbench check`. Example: genbench baseline runs/main --out baseline.json"""
    from genbench.gate import make_baseline, write_baseline

    data = make_baseline(_stored(run_dir), source=str(run_dir))
    write_baseline(data, out)
    typer.echo(f"baseline: {len(data['records'])} records from {run_dir} written to {out}", err=True)


@app.command()
@handle_errors
def check(
    baseline_file: Path = typer.Option(..., "--baseline", help="Baseline file from `genbench baseline`."),
    results_dir: Path = typer.Option(..., "--results", help="Run directory whose results are checked."),
    tolerance: list[str] = typer.Option([], "--tolerance", "-t", help="METRIC=VALUE (absolute) or METRIC=PERCENT% (of the baseline), repeatable [default: 0; wall-clock metrics are checked only when named]."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
) -> None:
    """Exit 1 with a table of regressions when a metric got worse than the baseline beyond its tolerance
    and outside its interval; 0 otherwise; 2 on bad input. Example: genbench check --baseline baseline.json --results runs/pr --tolerance fid=5%"""
    from genbench.gate import check as check_runs, common_cells, json_rows, parse_tolerances, read_baseline, text_table

    tolerances = parse_tolerances(tolerance)
    base = read_baseline(baseline_file)
    current = _stored(results_dir)
    regressions = check_runs(base, current, tolerances)
    shared = common_cells(base, current)
    if as_json:
        typer.echo(json.dumps({"passed": regressions.empty, "specs_compared": shared, "baseline": str(baseline_file),
                               "results": str(results_dir), "regressions": json_rows(regressions)}, sort_keys=True))
    elif regressions.empty:
        typer.echo(f"check passed: no regression in {plural(shared, 'spec')} shared by {results_dir} and {baseline_file}")
    else:
        typer.echo(text_table(regressions))
        typer.echo(f"check failed: {plural(len(regressions), 'regression')} in {plural(shared, 'spec')} against {baseline_file}", err=True)
    if not regressions.empty:
        raise typer.Exit(1)


@app.command("ls")
@handle_errors
def ls_cmd(kind: str = typer.Argument(..., metavar="KIND", help=f"What to list: {', '.join(KINDS)}.")) -> None:
    """List what is registered, one line each. Example: genbench ls samplers"""
    from genbench.listing import cached_listing
    from genbench.registry import check_choice

    check_choice(kind, list(KINDS), "kind to list")
    for name, desc in cached_listing(kind):
        typer.echo(f"{name:<24} {desc}")


@app.command()
@handle_errors
def stats(
    dataset: str = typer.Argument(..., help="DATASET[:SPLIT] or dataset:DATASET[:SPLIT], e.g. digits:test."),
    features: str = typer.Option("auto", "--features", "-f", help="Feature extractor."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the statistics to this file (.safetensors or .npz, by its suffix)."),
    n: Optional[int] = typer.Option(None, "--n", help="Use at most N examples."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Feature-extractor weights file."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Directory holding dataset files."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache directory."),
) -> None:
    """Precompute (and cache) reference features and statistics. Example: genbench stats digits:test --out digits.safetensors"""
    from genbench.api import compute_stats

    path, meta = compute_stats(dataset, features=features, out=out, n=n, weights=weights, device=device,
                               data_root=data_root, cache_dir=cache)
    typer.echo(f"{dataset}: {meta.get('n')} examples, features {meta.get('features')}" + (f"; written to {path}" if path else ""))


@app.command("train-features")
@handle_errors
def train_features(
    dataset: str = typer.Argument(..., help="Dataset to train the domain classifier on (digits, mnist5k, fashion-mnist)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Directory for the weights and manifest [default: the cache]."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs [default: the recipe's]."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Directory holding dataset files."),
) -> None:
    """Train the domain:<dataset> feature classifier. Example: genbench train-features digits --out my_features/"""
    from genbench.features.domain import train_domain_classifier
    from genbench.runner import resolve_device

    manifest = train_domain_classifier(dataset, out_dir=out, epochs=epochs, seed=seed, device=resolve_device(device), data_root=data_root)
    typer.echo(json.dumps(manifest, indent=1, sort_keys=True, default=str))


@app.command()
@handle_errors
def bench(
    target: BenchTarget = typer.Argument(BenchTarget.metrics, help="What to benchmark: metrics (on features), images (folders to FID/KID/IS), sampler (DDIM loop), or all."),
    n: int = typer.Option(5000, "--n", min=2, help="Feature rows per set (metrics)."),
    fid_n: Optional[int] = typer.Option(None, "--fid-n", min=2, help="Feature rows per set for FID (metrics) [default: --n]."),
    dim: int = typer.Option(2048, "--dim", min=1, help="Feature dimension (metrics)."),
    images: int = typer.Option(100, "--images", min=10, help="PNGs per folder (images)."),
    batch: int = typer.Option(8, "--batch", min=1, help="Samples per batch (sampler)."),
    steps: int = typer.Option(20, "--steps", min=1, help="DDIM steps (sampler)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Timing repeats (the minimum is reported)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch and numpy [default: all]."),
    profile: bool = typer.Option(False, "--profile", help="Profile genbench's side of each row that misses its target."),
    publish: Optional[Path] = typer.Option(None, "--publish", help="Also write the table, device, versions and command to this Markdown file."),
) -> None:
    """Time genbench against its peers (torch-fidelity, torchmetrics, clean-fid, pytorch-fid, prdc, diffusers) on the
    same inputs in one process. Example: genbench bench all --images 100 --publish leaderboards/performance.md"""
    from genbench.bench import main as bench_main
    from genbench.runner import resolve_device

    argv = [target.value, "--n", str(n), "--dim", str(dim), "--images", str(images), "--batch", str(batch), "--steps",
            str(steps), "--device", resolve_device(device), "--repeats", str(repeats)]
    argv += (["--threads", str(threads)] if threads else []) + (["--profile"] if profile else [])
    argv += ["--fid-n", str(fid_n)] if fid_n else []
    bench_main(argv + (["--publish", str(publish)] if publish else []))


@app.command()
@handle_errors
def sample(
    model: str = typer.Argument(..., help="A recipe (with --dataset), a checkpoint path, diffusers:PATH or python:MODULE:FUNCTION."),
    out: Path = typer.Option(..., "--out", "-o", help="Output .npz (samples, nfe, seconds)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Dataset a recipe is trained on (or loaded from the checkpoint cache)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Sampler name (genbench ls samplers); the model's first when omitted."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps; the model's default for the sampler when omitted."),
    n: Optional[int] = typer.Option(None, "--n", help="Number of samples; 16, or the rows of --init-noise, when omitted."),
    seed: int = typer.Option(0, "--seed", help="Seed of the per-sample noise (and of a recipe's training)."),
    init_noise: Optional[Path] = typer.Option(None, "--init-noise", help="Standard-normal .npy (N x data shape) scaled into the initial state."),
    batch_size: int = typer.Option(256, "--batch-size", help="Samples per batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    option: Optional[list[str]] = typer.Option(None, "--option", help="A sampling option NAME=VALUE (repeatable), e.g. guidance=2 or eta=0.5."),
) -> None:
    """Draw samples of any model to an .npz. Example: genbench sample diffusers:ddpm-cifar10 --sampler ddim --steps 50 --n 64 --out s.npz"""
    from genbench.sampling_api import parse_options, sample_to_file

    r = sample_to_file(model, out, dataset=dataset, sampler=sampler, steps=steps, n=n, seed=seed, init_noise=init_noise,
                       batch_size=batch_size, device=device, options=parse_options(option))
    typer.echo(f"{len(r.samples)} samples ({r.sampler}, steps {r.steps}, NFE {r.nfe:g}, {r.seconds:.2f} s) written to {out}", err=True)


def escape_help_markup(typer_app: typer.Typer) -> None:
    """Typer renders help through rich, whose markup eats text in square brackets ("[default: ...]",
    "genbench[ray]"): escape every help text and docstring once, so they print as written."""
    import inspect

    from rich.markup import escape
    from typer.models import ParameterInfo

    for cmd in typer_app.registered_commands:
        if cmd.callback is None:
            continue
        if cmd.help is None and cmd.callback.__doc__:
            cmd.help = escape(inspect.cleandoc(cmd.callback.__doc__))
        for param in inspect.signature(cmd.callback).parameters.values():
            info = param.default
            if isinstance(info, ParameterInfo) and info.help and not getattr(info, "_escaped", False):
                info.help = escape(info.help)
                info._escaped = True


escape_help_markup(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click's usage errors exit 2, genbench's errors exit as documented."""
    try:
        rv = app(args=argv, prog_name="genbench", standalone_mode=False)
    except Exit as e:
        sys.exit(e.exit_code)
    except ClickException as e:
        if e.format_message().strip():  # (empty for "no arguments": the help was printed)
            typer.echo(f"genbench: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except Abort:
        typer.echo("genbench: interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # a bug: one line unless debugging
        if os.environ.get("GENBENCH_DEBUG"):
            raise
        typer.echo(f"genbench: internal error: {type(e).__name__}: {e}. Rerun with GENBENCH_DEBUG=1 for the traceback and report it.", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)
