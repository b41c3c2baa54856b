"""The ``genbench`` command line: one thin function per command over the Python API.

Exit codes: 0 success; 2 bad usage or bad input (one line on stderr, no traceback); 1 a failure
of the run itself. ``GENBENCH_DEBUG=1`` shows tracebacks of unexpected errors.
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

from genbench.errors import GenbenchError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Benchmark generative models: train or load, sample, evaluate, publish leaderboards.")


class Kind(str, Enum):
    datasets = "datasets"
    features = "features"
    metrics = "metrics"
    models = "models"
    samplers = "samplers"
    suites = "suites"


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    markdown = "markdown"


class BenchTarget(str, Enum):
    metrics = "metrics"


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


@app.command()
@handle_errors
def run(
    suite: str = typer.Option("default", "--suite", "-s", help="Built-in suite name or path to a suite YAML (genbench ls suites)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory for results.sqlite and leaderboard.md [default: genbench-runs/SUITE]."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Override the seeds of every grid in the suite."),
    publish: bool = typer.Option(False, "--publish", help="Also write leaderboards/<suite>.md and .csv."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Cache directory [default: $GENBENCH_CACHE or ~/.cache/genbench]."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Directory holding dataset files (Fashion-MNIST idx.gz, torchvision sets)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Feature-extractor weights file (e.g. Inception for FID)."),
    rerun: bool = typer.Option(False, "--rerun", help="Recompute specs already stored as ok."),
    executor: str = typer.Option("local", "--executor", help="local, or ray (pip install 'genbench[ray]')."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run a benchmark suite end to end. Example: genbench run --suite smoke --out runs/smoke"""
    from genbench.api import run_suite

    summary = run_suite(suite, out=out, device=device, seed=seed, publish=publish, cache_dir=cache, data_root=data_root,
                        weights=weights, progress=progress, rerun=rerun, executor=executor)
    typer.echo(f"{summary.suite}: {summary.count('ok')} ok, {summary.count('failed')} failed, "
               f"{summary.count('skipped')} skipped; results in {summary.out / 'results.sqlite'}", err=True)
    typer.echo(f"leaderboard: {summary.leaderboard}", err=True)
    for p in summary.published:
        typer.echo(f"published: {p} and {p.with_suffix('.csv')}", err=True)
    if summary.count("ok") == 0 and summary.records:
        fail("no run of the suite succeeded; see the errors above", 1)


@app.command("eval")
@handle_errors
def eval_cmd(
    input1: str = typer.Argument(..., help="Generated set: image folder, .npz/.npy, or dataset:NAME[:SPLIT]."),
    input2: str = typer.Argument(..., help="Reference set: as INPUT1, or a statistics file from `genbench stats`."),
    features: str = typer.Option("auto", "--features", "-f", help="raw, inception, vgg16, domain:DATASET, or auto."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Feature-extractor weights file."),
    metrics: Optional[str] = typer.Option(None, "--metrics", "-m", help="Comma list from fid,kid,is,precision,recall,density,coverage,fd_inf [default: all the features allow]."),
    n: Optional[int] = typer.Option(None, "--n", help="Use at most N samples of each input (seeded subset)."),
    seed: int = typer.Option(2020, "--seed", help="Seed of the subsets and of KID/IS/bootstrap."),
    bootstrap: int = typer.Option(0, "--bootstrap", help="Bootstrap resamples for 95% confidence intervals (0: none)."),
    kid_subset_size: int = typer.Option(1000, "--kid-subset-size", help="KID subset size (min(n1, n2, this) is used and reported)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    batch_size: int = typer.Option(256, "--batch-size", help="Feature-extraction batch size."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Directory holding dataset files."),
    as_json: bool = typer.Option(False, "--json", help="Print exactly one JSON object on stdout."),
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
                      batch_size=batch_size, bootstrap=bootstrap, kid_subset_size=kid_subset_size, data_root=data_root)
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
    fmt: Format = typer.Option(Format.table, "--format", help="Output format."),
) -> None:
    """Print what a run stored. Example: genbench results genbench-runs/default --format markdown"""
    from genbench.report.tables import render_results

    typer.echo(render_results(run_dir, fmt.value))


@app.command("ls")
@handle_errors
def ls_cmd(kind: Kind = typer.Argument(..., help="What to list.")) -> None:
    """List what is registered, one line each. Example: genbench ls samplers"""
    from genbench.report.tables import listing

    for name, desc in listing(kind.value):
        typer.echo(f"{name:<24} {desc}")


@app.command()
@handle_errors
def stats(
    dataset: str = typer.Argument(..., help="DATASET[:SPLIT], e.g. digits:test."),
    features: str = typer.Option("auto", "--features", "-f", help="Feature extractor."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the statistics to this .safetensors file."),
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
    target: BenchTarget = typer.Argument(BenchTarget.metrics, help="What to benchmark."),
    n: int = typer.Option(5000, "--n", help="Samples per set."),
    dim: int = typer.Option(2048, "--dim", help="Feature dimension."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    repeats: int = typer.Option(1, "--repeats", help="Timing repeats (the minimum is reported)."),
) -> None:
    """Time genbench against the reference packages on the same inputs. Example: genbench bench metrics --n 10000"""
    from genbench.bench import main as bench_main
    from genbench.runner import resolve_device

    bench_main([target.value, "--n", str(n), "--dim", str(dim), "--device", resolve_device(device), "--repeats", str(repeats)])


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
) -> None:
    """Draw samples of any model to an .npz. Example: genbench sample diffusers:ddpm-cifar10 --sampler ddim --steps 50 --n 64 --out s.npz"""
    from genbench.sampling_api import sample_to_file

    r = sample_to_file(model, out, dataset=dataset, sampler=sampler, steps=steps, n=n, seed=seed, init_noise=init_noise,
                       batch_size=batch_size, device=device)
    typer.echo(f"{len(r.samples)} samples ({r.sampler}, steps {r.steps}, NFE {r.nfe:g}, {r.seconds:.2f} s) written to {out}", err=True)


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
