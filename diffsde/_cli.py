"""The ``diffsde`` command line."""

import argparse
import inspect
import json
import sys
from collections.abc import Sequence

EXIT_SPEC_ERROR = 2


def _validate(args) -> int:
    from ._plugins import get_registry
    from ._spec._validate import SpecError, compatible_objectives, load_spec

    try:
        setup = load_spec(args.spec, args.set or ())
    except SpecError as err:
        return _report_spec_error(err, args.spec)
    except Exception as e:  # a bug (in diffsde or a plugin) is still one line, not a traceback
        print(
            f"{args.spec}:1:1 internal error: {type(e).__name__}: {e}; please report it with "
            "the spec",
            file=sys.stderr,
        )
        return EXIT_SPEC_ERROR
    _warn_of_plugins(setup)
    if args.resolved:
        sys.stdout.write(setup.resolved_yaml())
        return 0
    sde = setup.spec.sde.type
    kernel = "Gaussian kernel" if setup.sde.has_gaussian_kernel else "no Gaussian kernel"
    usable = compatible_objectives(setup.sde, get_registry())
    objectives = ", ".join(usable) if usable else "none registered yet"
    print(
        f"ok: {args.spec} (sde '{sde}' with {kernel}, data '{setup.spec.data.type}' in "
        f"dimension {setup.dim}; objectives that can train it: {objectives})"
    )
    return 0


def _warn_of_plugins(setup) -> None:
    """One stderr line per plugin problem (a failed import, a misspelt hook, a refused
    component) when a spec validates anyway — what the user may have meant to use is missing —
    and one if the spec's SDE has a kernel that contradicts its own drift and diffusion."""
    from ._conformance import kernel_warning
    from ._plugins import plugin_warnings

    for line in plugin_warnings():
        print(line, file=sys.stderr)
    warning = kernel_warning(setup.sde, setup.spec.sde.type)
    if warning:
        print(warning, file=sys.stderr)


def _report_spec_error(err, source) -> int:
    for issue in err.issues:
        print(issue, file=sys.stderr)
    count = len(err.issues)
    print(f"{source}: {count} problem{'s' if count > 1 else ''}", file=sys.stderr)
    return EXIT_SPEC_ERROR


def _run(args) -> int:
    from ._lineage import runs_directory
    from ._run import require_runnable, resume, run, sigterm_stops
    from ._spec._validate import SpecError, load_spec

    progress = not args.quiet
    # SIGTERM from here on (e.g. the dashboard's Stop while JAX compiles) ends the run as
    # `stopped` with everything kept, instead of killing it before it has a run.h5.
    with sigterm_stops() as stop:
        try:
            if args.resume:
                if args.spec or args.set or args.run_dir:
                    print(
                        "--resume continues a run with its own spec: give no SPEC, --set or "
                        "--run-dir",
                        file=sys.stderr,
                    )
                    return EXIT_SPEC_ERROR
                path = resume(args.resume, progress=progress, stop=stop)
            else:
                if not args.spec:
                    print("diffsde run: give a SPEC file (or --resume RUN)", file=sys.stderr)
                    return EXIT_SPEC_ERROR
                with runs_directory(args.runs_dir):  # run ids in `init:` are looked up there
                    setup = load_spec(args.spec, args.set or ())
                _warn_of_plugins(setup)
                require_runnable(setup)
                path = run(setup, args.runs_dir, progress=progress, run_dir=args.run_dir, stop=stop)
        except SpecError as err:
            return _report_spec_error(err, args.spec or args.resume)
    return _print_run(path)


def _print_run(path) -> int:
    from ._runs import open_run

    record = open_run(path)
    print(f"{record.status}: {record.path}")
    for name, value in sorted(record.eval.items()):
        print(f"  {name:<12} {value:.6g}")
    for name, count in sorted(record.nfe.items()):
        print(f"  nfe[{name}] {count}")
    if record.message:
        print(f"  {record.message}")
    return 0 if record.status == "completed" else 1


TRANSFORM_SYNTAX = "TYPE or TYPE:KEY=VALUE,KEY=VALUE (values in YAML), e.g. temperature:tau=0.5"


def _split_top_level(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` outside brackets, parentheses, braces and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def parse_transform(text: str) -> dict:
    """A ``--transform`` option as a spec item ``{"type": TYPE, KEY: VALUE, …}``: ``TYPE`` or
    ``TYPE:KEY=VALUE,KEY=VALUE``, each VALUE read as YAML (``[true, false]``, ``{c: 1.0}``);
    commas inside brackets, parentheses or quotes do not separate settings, so expressions
    such as ``maximum(x, 0)`` need no quoting. ValueError says what is wrong."""
    import yaml

    from ._spec._source import BoundedLoader

    tag, _, rest = text.partition(":")
    if not tag.strip() or not tag.strip().isidentifier():
        raise ValueError(f"{tag.strip()!r} is not a transform type")
    item: dict = {"type": tag.strip()}
    for setting in _split_top_level(rest, ",") if rest.strip() else []:
        key, sep, raw = setting.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"setting {setting.strip()!r} is not KEY=VALUE")
        if key in item:
            raise ValueError(f"{key} is given twice")
        try:
            item[key] = yaml.load(raw, Loader=BoundedLoader) if raw.strip() else ""  # noqa: S506
        except yaml.YAMLError as err:
            first = str(err).splitlines()[0]
            raise ValueError(f"the value of {key} is not valid YAML: {first}") from None
    return item


def _sample(args) -> int:
    from ._run import sample_run
    from ._spec._source import Location
    from ._spec._validate import SpecError, SpecIssue

    texts = args.transform or []
    items = []
    for text in texts:
        try:
            items.append(parse_transform(text))
        except ValueError as err:
            print(
                f"diffsde sample: --transform {text!r}: {err}; write {TRANSFORM_SYNTAX}",
                file=sys.stderr,
            )
            return EXIT_SPEC_ERROR
    try:
        label, evaluation, nfe = sample_run(
            args.run, args.sampler, args.n, args.set or (), transforms=items
        )
    except SpecError as err:
        where = {
            f"transforms[{i}]": Location(f"--transform {t}", 1, 1) for i, t in enumerate(texts)
        }
        issues = [
            SpecIssue(where.get(issue.location.file, issue.location), issue.key, issue.message)
            for issue in err.issues
        ]
        return _report_spec_error(SpecError(issues), args.run)
    print(f"{label}: nfe {nfe}")
    for name, value in sorted(evaluation.items()):
        print(f"  {name:<12} {value:.6g}")
    return 0


LIKELIHOOD_OPTIONS = ("n", "divergence", "probes", "eps", "rtol", "atol")


def _eval(args) -> int:
    settings = {k: getattr(args, k) for k in LIKELIHOOD_OPTIONS if getattr(args, k) is not None}
    if not args.likelihood:
        if settings:
            given = ", ".join(f"--{k}" for k in settings)
            print(f"diffsde eval: {given} only apply with --likelihood", file=sys.stderr)
            return EXIT_SPEC_ERROR
        from ._run import evaluate_run

        for name, value in sorted(evaluate_run(args.run).items()):
            print(f"  {name:<12} {value:.6g}")
        return 0
    import time

    import pydantic

    from ._run import likelihood_run

    start = time.perf_counter()
    try:
        values, nfe = likelihood_run(args.run, **settings)
    except pydantic.ValidationError as err:
        for error in err.errors():
            # the option's name: the last key (the estimator's settings sit inside a part)
            option = next((str(p) for p in reversed(error["loc"]) if isinstance(p, str)), "")
            print(f"diffsde eval --likelihood: --{option}: {error['msg']}", file=sys.stderr)
        return EXIT_SPEC_ERROR
    print(f"likelihood: nfe {nfe}, {time.perf_counter() - start:.1f} s")
    for name, value in sorted(values.items()):
        print(f"  {name:<12} {value:.6g}")
    return 0


def _runs(args) -> int:
    from ._runs import format_table, list_runs, summary_row

    if args.upgrade:
        from ._runs_legacy import upgrade_runs

        outcomes = upgrade_runs(args.runs_dir)
        for outcome in outcomes:
            print(f"{outcome.path}: {outcome.outcome}")
        if not outcomes:
            print(f"no format-1 runs in {args.runs_dir}")
        return 1 if any(o.outcome != "upgraded" for o in outcomes) else 0
    problems = []
    records = list_runs(args.runs_dir, problems=problems)
    if records:
        print(format_table([summary_row(r) for r in records]))
    else:
        print(f"no runs in {args.runs_dir}")
    for problem in problems:
        print(f"skipped {problem.path}: {problem.reason}", file=sys.stderr)
    return 0


def _check(args) -> int:
    from ._check import check, settings_from
    from ._spec._validate import SpecError

    try:
        report = check(
            args.kind,
            args.tag,
            settings=settings_from(args.set or []),
            quick=args.quick,
            sde=args.sde,
            dim=args.dim,
            seed=args.seed,
            spec=args.spec,
        )
    except SpecError as err:  # name the option the problem came from, not the spec built
        for issue in err.issues:
            print(
                f"diffsde check {args.kind} {args.tag}: {_check_option(args, issue)}",
                file=sys.stderr,
            )
        return EXIT_SPEC_ERROR
    except ValueError as err:
        print(f"diffsde check: {err}", file=sys.stderr)
        return EXIT_SPEC_ERROR
    print(report.text())
    return 0 if report.passed else 1


def _check_option(args, issue) -> str:
    """``--set KEY: message`` for a key of the checked section, ``--sde …``/``--dim …`` for the
    context, the message alone for the section's type (the component itself)."""
    from ._check import SECTION

    section = SECTION[args.kind]
    key = issue.key
    if key == f"{section}.type" or key == section:
        return issue.message
    if key.startswith(f"{section}."):
        return f"--set {key.removeprefix(section + '.')}: {issue.message}"
    if key.startswith("sde."):
        return f"--sde {args.sde}: {issue.message}"
    if key.startswith("data."):
        return f"--dim {args.dim}: {issue.message}"
    return f"{key}: {issue.message}" if key else issue.message


def _schema(args) -> int:
    from ._plugins import get_registry
    from ._spec._model import spec_model

    text = json.dumps(spec_model(get_registry()).model_json_schema(), indent=2)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    else:
        print(text)
    return 0


def _plugins(args) -> int:
    from ._plugins import get_registry

    registry = get_registry()
    rows = registry.rows()
    failed = [*registry.errors, *(e for e in args.command_errors if e not in registry.errors)]
    errors = [str(e) for e in failed]
    commands = [
        {"name": name, "plugin": parser.get_default("diffsde_plugin") or "?", "help": help}
        for name, (parser, help) in sorted(args.plugin_commands.items())
    ]
    pages = [
        {"title": p.title, "plugin": p.plugin, "distribution": p.distribution}
        for p in registry.pages
    ]
    parts = [
        {
            "kind": kind,
            "name": name,
            "plugin": plugin,
            "distribution": distribution,
            "doc": ((inspect.getdoc(cls) or "").strip().splitlines() or [""])[0],
        }
        for kind, table in sorted(registry.parts.items())
        for name, (cls, plugin, distribution) in sorted(table.items())
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "components": rows,
                    "parts": parts,
                    "commands": commands,
                    "pages": pages,
                    "errors": errors,
                },
                indent=2,
            )
        )
        return 0
    for kind in registry.components:
        print(f"{kind}s:")
        names = registry.names(kind)
        if not names:
            print("  (none registered)")
        for name in names:
            c = registry.get(kind, name)
            print(f"  {name:<16} {c.distribution:<14} {c.doc}")
    print("parts (a component's key of that kind takes any of them):")
    for part in parts:
        print(f"  {part['kind'] + ' ' + part['name']:<28} {part['distribution']:<10} {part['doc']}")
    print("commands (diffsde COMMAND):")
    if not commands:
        print("  (none added by plugins)")
    for command in commands:
        print(f"  {command['name']:<16} {command['plugin']:<14} {command['help']}")
    print("dashboard pages:")
    if not pages:
        print("  (none added by plugins)")
    for page in pages:
        print(f"  {page['title']:<16} {page['distribution']:<14} plugin {page['plugin']}")
    if errors:
        print("plugin errors:")
        for e in errors:
            print(f"  {e}")
    return 0


def _dashboard(args) -> int:
    import importlib.util
    import os
    import pathlib
    import subprocess

    def installed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a missing parent package, a module set to None
            return False

    missing = [m for m in ("streamlit", "altair", "ruamel.yaml") if not installed(m)]
    if missing:
        print(
            f"diffsde dashboard: {', '.join(missing)} not installed; install the dashboard "
            "with `pip install 'diffsde[dashboard]'`",
            file=sys.stderr,
        )
        return 1
    root = pathlib.Path(__file__).resolve().parent.parent
    entry = root / "app" / "main.py"
    if not entry.is_file():
        print(
            f"diffsde dashboard: {entry} not found; the dashboard lives in the app/ folder of a "
            "source checkout: install diffsde from one with `pip install -e .`",
            file=sys.stderr,
        )
        return 1
    env = dict(os.environ, DIFFSDE_RUNS_DIR=str(pathlib.Path(args.runs_dir).resolve()))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "streamlit", "run", str(entry)]
    options = [
        *("--server.address", args.host, "--server.port", str(args.port)),
        *("--browser.gatherUsageStats", "false"),
    ]
    print(f"diffsde dashboard: serving on http://{args.host}:{args.port}", file=sys.stderr)
    return subprocess.call([*command, *options], env=env, cwd=root)


def _add_overrides(command: argparse.ArgumentParser, help: str) -> None:
    command.add_argument("--set", action="append", metavar="KEY=VALUE", help=help)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="diffsde", description="Score-based diffusion models declared as SDEs."
    )
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser(
        "validate", help="check a spec; print file:line:col key: message per problem"
    )
    v.add_argument("spec", help="path to a YAML spec")
    _add_overrides(v, "override a key (dotted path), repeatable")
    v.add_argument("--resolved", action="store_true", help="print the spec with all defaults")
    v.set_defaults(handler=_validate)

    s = sub.add_parser("schema", help="print the JSON Schema of specs")
    s.add_argument("--output", "-o", help="write to this file instead of stdout")
    s.set_defaults(handler=_schema)

    r = sub.add_parser("run", help="train, sample and evaluate a spec; store it all in runs/")
    r.add_argument("spec", nargs="?", help="path to a YAML spec")
    _add_overrides(r, "override a key (dotted path), repeatable")
    r.add_argument("--runs-dir", default="runs", help="where run directories go (default: runs)")
    r.add_argument(
        "--run-dir", help="create the run in this directory (made beforehand, no run.h5 in it)"
    )
    r.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    r.set_defaults(handler=_run)

    sa = sub.add_parser("sample", help="sample a finished run's model with any sampler")
    sa.add_argument("run", help="run directory")
    sa.add_argument("--sampler", help="sampler type (default: the run's own)")
    sa.add_argument("--n", type=int, help="number of samples (default: the run's eval.n_samples)")
    _add_overrides(sa, "e.g. sampler.steps=50, repeatable")
    sa.add_argument(
        "--transform",
        action="append",
        metavar="TYPE[:KEY=VALUE,...]",
        help="apply a score transform before the sampler, repeatable, in order (the first wraps "
        "the model): temperature:tau=0.5, guidance:log_potential=-0.5*sum((x-1)**2),weight=2, "
        "inpaint:mask=[true,false],values=[1.5]; values are YAML",
    )
    sa.set_defaults(handler=_sample)

    ev = sub.add_parser(
        "eval",
        help="recompute a run's metrics on its stored samples, or (--likelihood) the "
        "log-likelihood of its held-out data",
    )
    ev.add_argument("run", help="run directory")
    ev.add_argument(
        "--likelihood",
        action="store_true",
        help="negative log-likelihood of held-out data through the probability-flow ODE "
        "(nats/dim; bits/dim for quantised images), stored in the run; the options below "
        "override the spec's own log_likelihood metric item, else the defaults shown",
    )
    from ._likelihood import LikelihoodMetric, ProbabilityFlowLikelihood

    # the defaults shown are the metric's own, stated once in its class
    metric, estimator = LikelihoodMetric(), ProbabilityFlowLikelihood()
    ev.add_argument("--n", type=int, help=f"held-out points (default {metric.n})")
    ev.add_argument(
        "--divergence",
        choices=("auto", "exact", "hutchinson"),
        help="exact trace, Hutchinson estimate, or auto: exact for dim <= 64 (default "
        f"{estimator.divergence})",
    )
    ev.add_argument(
        "--probes", type=int, help=f"Hutchinson probes per point (default {estimator.probes})"
    )
    ev.add_argument("--eps", type=float, help=f"start time of the flow (default {estimator.eps:g})")
    ev.add_argument(
        "--rtol", type=float, help=f"solver relative tolerance (default {estimator.rtol:g})"
    )
    ev.add_argument(
        "--atol", type=float, help=f"solver absolute tolerance (default {estimator.atol:g})"
    )
    ev.set_defaults(handler=_eval)

    ls = sub.add_parser("runs", help="table of the runs in a runs directory")
    ls.add_argument("--runs-dir", default="runs", help="the runs directory (default: runs)")
    ls.add_argument(
        "--upgrade",
        action="store_true",
        help="convert runs of the old one-file format (run.h5) to the current one",
    )
    ls.set_defaults(handler=_runs)

    ck = sub.add_parser(
        "check",
        help="check a component against theory (the conformance kit): exit 0 if it passes",
        description="Build the component KIND TAG from --set settings and run its kind's "
        "checks: each prints what it compared, the measured deviation (standard errors, "
        "relative, or order) and its tolerance. Exit 0: all passed; 1: a check failed; 2: bad "
        "input.",
    )
    ck.add_argument(
        "kind", help="sde, sampler, objective, metric, dataset, model, transform or method"
    )
    ck.add_argument("tag", help="the component's spec `type:` (see `diffsde plugins`)")
    _add_overrides(ck, "a key of the component's spec section (e.g. steps=20), repeatable")
    ck.add_argument(
        "--quick", action="store_true", help="fewer paths and steps (seconds, not minutes)"
    )
    ck.add_argument(
        "--sde",
        default="vp",
        help="the SDE a sampler, objective, metric or dataset is checked with (default: vp)",
    )
    ck.add_argument("--dim", type=int, help="the data dimension (default: per kind)")
    ck.add_argument(
        "--spec",
        help="for a training method: a spec file whose other sections (model, objective, data, "
        "SDE, training) are its context (default: a small MLP, DSM, a Gaussian mixture)",
    )
    ck.add_argument("--seed", type=int, default=0, help="the seed of every check (default: 0)")
    ck.set_defaults(handler=_check)

    pl = sub.add_parser("plugins", help="list every registered component and plugin errors")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.set_defaults(handler=_plugins)

    d = sub.add_parser("dashboard", help="browse runs and plugins in a web app (Streamlit)")
    d.add_argument("--runs-dir", default="runs", help="the runs directory (default: runs)")
    d.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; the dashboard can "
        "launch and delete runs, so expose it with care)",
    )
    d.add_argument("--port", type=int, default=8501, help="port to serve on (default: 8501)")
    d.set_defaults(handler=_dashboard)
    _add_plugin_commands(p, sub)
    return p


def _add_plugin_commands(p: argparse.ArgumentParser, sub) -> None:
    """The subcommands plugins add (``register_commands``). A plugin that fails, or names a
    built-in command (argparse refuses the duplicate), is skipped: its error is listed by
    `diffsde plugins`, counted in `diffsde --help`, and named on stderr when the command given
    is not found (it may be the failed plugin's)."""
    from ._plugins import add_plugin_commands

    builtin = set(sub.choices)
    errors = add_plugin_commands(sub)
    helps = {a.dest: a.help for a in sub._choices_actions}
    added = {
        name: (parser, helps.get(name) or "")
        for name, parser in sub.choices.items()
        if name not in builtin
    }
    p.set_defaults(command_errors=errors, plugin_commands=added, commands=tuple(sub.choices))
    if errors:
        names = ", ".join(sorted({e.plugin for e in errors}))
        p.epilog = (
            f"plugins that failed to load or to add their commands: {names} "
            "(`diffsde plugins` says why)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    p = parser()
    failed = p.get_default("command_errors")
    if failed and argv and not argv[0].startswith("-") and argv[0] not in p.get_default("commands"):
        names = ", ".join(sorted({e.plugin for e in failed}))
        print(
            f"diffsde: no command {argv[0]!r}; plugin(s) {names} failed to add their commands "
            "(`diffsde plugins` says why)",
            file=sys.stderr,
        )
    args = p.parse_args(argv)
    if vars(args).get("handler") is None:
        print(
            f"diffsde {args.command}: this command has no handler; its plugin must call "
            "set_defaults(handler=fn) on its parser",
            file=sys.stderr,
        )
        return 1
    from ._runs import CheckpointError, RunReadError, is_disk_full

    try:
        return args.handler(args)
    except (RunReadError, CheckpointError, FileNotFoundError) as e:
        print(f"diffsde {args.command}: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if not is_disk_full(e):
            raise
        print(
            f"diffsde {args.command}: disk full ({e.strerror}); everything stored before it is "
            "kept unchanged (a run ends `failed`: free space, then `diffsde run --resume RUN`).",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
