"""``medmo``: the pipeline's command line.

    medmo demo          materialize the whole graph and print where the outputs are and the headline scores
    medmo materialize   materialize some assets (``--partition`` for a partitioned one), one line per job
    medmo ui            serve the Dagster UI on 127.0.0.1 (``dagster dev``); stops all of it on SIGINT/SIGTERM
    medmo paths         print where everything lives under MEDMO_HOME
    medmo lineage       print the chain that produced a checkpoint (directory or asset key), text or JSON
    medmo rehearse      the paper recipe's stages under ZeRO-3 with 2 processes, on CPU at corpus scale

Every command that reads a recipe takes ``--recipe`` (a shipped name or a YAML path; default MEDMO_RECIPE,
else the embedded recipe). The Dagster commands run as subprocesses: this library never imports dagster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from medmo_pipeline import home


def dagster_environment() -> dict[str, str]:
    """The environment of the Dagster commands: DAGSTER_HOME under MEDMO_HOME, holding the checkout's
    dagster.yaml with the storage the environment selects (see ``medmo_pipeline.instance``), or the
    user's own DAGSTER_HOME, left as it is."""
    from medmo_pipeline.instance import conflicting_dagster_home, write_instance_file

    own = home.dagster_home()
    conflicting_dagster_home(os.environ, own)
    env = dict(os.environ)
    if not env.get("DAGSTER_HOME"):
        source = home.checkout_root() / "dagster.yaml"
        if source.is_file():
            notice = write_instance_file(source.read_text(), own / "dagster.yaml")
            if notice:
                print(f"medmo: {notice}", file=sys.stderr)
        own.mkdir(parents=True, exist_ok=True)
        env["DAGSTER_HOME"] = str(own)
    env["MEDMO_HOME"] = str(home.medmo_home())
    return env


def _dagster(*args: str) -> list[str]:
    return [str(Path(sys.executable).with_name("dagster")), *args]


def demo(select: str, warm: bool = True) -> int:
    """Materialize ``select`` (default: the whole graph, corpus partitions first) and print the headline scores;
    ``warm``: jobs start as forks of a warm job host (``launch/warm_host.py``), else each imports torch & co. itself."""
    env = dagster_environment()
    print(f"MEDMO_HOME={home.medmo_home()}  recipe={env.get('MEDMO_RECIPE', 'embedded')}", flush=True)
    started = time.time()
    groups = demo_commands(select)
    if any(len(group) > 1 for group in groups):
        # Runs started side by side on a fresh instance would each create its tables and collide.
        prepared = subprocess.run(_dagster("instance", "migrate"), env=env, cwd=home.checkout_root(),
                                  capture_output=True, text=True, check=False)
        if prepared.returncode != 0:
            print(prepared.stdout + prepared.stderr, file=sys.stderr)
            print(f"\ncould not prepare the Dagster instance at {env['DAGSTER_HOME']} (exit {prepared.returncode})",
                  file=sys.stderr)
            return prepared.returncode
    with warm_job_host(env) if warm else contextlib.nullcontext({}) as host:
        env.update(host)  # the launcher starts each job as a fork of a host that has imported torch & co.
        for group in groups:
            failed = run_together([(label, _dagster(*args)) for label, args in group], env,
                                  home.medmo_home() / "logs")
            if failed is not None:
                label, code = failed
                print(f"\nmaterialization failed (exit {code}, {label}); the lines above and its log say which "
                      f"asset and why.\nInspect it in the UI: `medmo ui`.", file=sys.stderr)
                return code
    print(f"\nmaterialized in {time.time() - started:.0f} s. Outputs under {home.medmo_home()}:")
    for label, path in [("corpus shards", home.corpus_dir()), ("base model", home.models_dir()),
                        ("checkpoints", home.checkpoints_dir()), ("evaluation tables", home.eval_dir()),
                        ("reports", home.reports_dir()), ("MLflow store", home.mlflow_dir()),
                        ("Dagster storage", home.dagster_home())]:
        print(f"  {label:<18} {path}")
    table = home.reports_dir() / "stage_ablation.csv"
    if table.is_file():
        import pandas as pd

        from medmo_pipeline.summary import headline_table

        print("\nHeadline scores (held-out split; every metric: reports/stage_ablation.csv, "
              "plot: reports/stage_ablation.png):")
        print(headline_table(pd.read_csv(table, index_col="checkpoint")))
    print_stage_summary(time.time() - started)
    return 0


def print_stage_summary(seconds: float) -> None:
    """What each stage was for and changed (paired 95% intervals), and where the seconds went."""
    from medmo_pipeline.config import RecipeError, load_recipe
    from medmo_pipeline.summary import effects_summary, timing_table

    try:
        recipe = load_recipe()
        purposes = {name: recipe.stage(name).purpose for name in recipe.checkpoints()[1:]}
    except RecipeError:
        purposes = {}
    effects = effects_summary(home.reports_dir(), purposes)
    if effects:
        print("\nWhat each stage was for and what it changed over its parent (same held-out samples; paired\n"
              "bootstrap 95% interval; plot: reports/stage_effects.png):")
        print(effects)
    print("\nWhere the seconds went (each step's own time, from the run logs under MEDMO_HOME/logs):")
    print(timing_table(home.medmo_home() / "logs", seconds))


def materialize(keys: list[str], partition: str | None) -> int:
    """Materialize ``keys`` in one Dagster run (``partition`` for partitioned assets), one line per job on
    the terminal and everything in a log; then each asset's key outputs."""
    env = dagster_environment()
    command = _dagster("asset", "materialize", "-m", "assets", "--select", ",".join(keys),
                       *(["--partition", partition] if partition else []))
    label = ",".join(keys) + (f" [{partition}]" if partition else "")
    failed = run_together([(label, command)], env, home.medmo_home() / "logs")
    if failed is not None:
        print(f"\nmedmo materialize: failed (exit {failed[1]}); `medmo ui` shows the run's event log",
              file=sys.stderr)
        return failed[1]
    print()
    for key in keys:
        answer = latest_materialization(key, partition, env["DAGSTER_HOME"])
        where = f" [{answer['partition']}]" if answer.get("partition") else ""
        print(f"{key}{where}: {answer.get('path') or '(no path)'}")
        if answer.get("data_version"):
            print(f"  data_version        {answer['data_version'][:16]}")
        for name, value in (answer.get("outputs") or {}).items():
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            print(f"  {name:<19} {shown}"[:99])
    return 0


def warm_job_host(env: dict[str, str]):
    """A warm job host (``medmo_pipeline.launch.warm_host``) started with the environment the local launcher
    gives its jobs, so that they match it and start warm; its log is ``MEDMO_HOME/logs/warm-host.log``."""
    from medmo_pipeline.config import RecipeError, load_recipe
    from medmo_pipeline.launch.local import job_env
    from medmo_pipeline.launch.warm_host import WarmHost

    try:
        offline = load_recipe().offline  # as assets.definitions gives the launcher
    except RecipeError:
        return contextlib.nullcontext({})  # loading the definitions reports it, before any job starts
    logs = home.medmo_home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    return WarmHost(env=job_env(env, run_id="", asset_key="", offline=offline), log_path=logs / "warm-host.log")


def run_together(group: list[tuple[str, list[str]]], env: dict[str, str], logs: Path,
                 slots: int | None = None) -> tuple[str, int] | None:
    """Run a group of (label, Dagster CLI command), ``slots`` at once (default: one per core); the first
    failure's (label, exit code), or None. Each command's whole output goes to its own log under ``logs``;
    the terminal gets one line per job (``medmo_pipeline.progress``), and a failed command's errors and
    the end of its log. After a failure no further command starts and those running are let finish."""
    import threading

    from medmo_pipeline.progress import ProgressView

    logs.mkdir(parents=True, exist_ok=True)
    waiting, running, failed = list(group), [], None
    slots = max(1, slots or os.cpu_count() or 1)
    lone = len(group) == 1
    lock = threading.Lock()

    def pump(process: subprocess.Popen, view: ProgressView) -> None:
        for line in process.stdout:
            with lock:
                view.feed(line)

    while waiting or running:
        while waiting and len(running) < slots:
            label, command = waiting.pop(0)
            log = logs / ("medmo-" + "".join(c if c.isalnum() else "_" for c in label)[:80] + ".log")
            handle = log.open("w")
            print(f"== {label} (log: {log})", flush=True)
            process = subprocess.Popen(command, env=env, cwd=home.checkout_root(), stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1)
            view = ProgressView(handle, prefix=None if lone else label, tty=None if lone else False)
            reader = threading.Thread(target=pump, args=(process, view), daemon=True)
            reader.start()
            running.append((label, log, handle, process, view, reader))
        time.sleep(0.2)
        for entry in [e for e in running if e[3].poll() is not None]:
            label, log, handle, process, view, reader = entry
            reader.join()
            running.remove(entry)
            with lock:
                view.close(succeeded=process.returncode == 0)
                handle.close()
                if process.returncode == 0:
                    print(f"== {label}: done", flush=True)
                    continue
                tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-25:])
                print(f"== {label}: FAILED (exit {process.returncode})\n" + "\n".join(view.errors[-5:]) +
                      f"\n-- end of {log}:\n{tail}", flush=True)
            if failed is None:
                failed = (label, process.returncode)
                waiting.clear()  # nothing further starts; those running finish
    return failed


def demo_commands(select: str) -> list[list[tuple[str, list[str]]]]:
    """Dagster CLI calls for a selection, in groups run one after another; the calls of one group are
    independent and run at the same time. A partitioned asset needs one run per partition, so the whole
    graph is: every ``corpus_shards`` partition (one per corpus source, observed in the same run so its
    provenance names the source version), then everything else with the first benchmark's evaluation
    partitions, then the evaluations (and the ablation) of each further benchmark."""
    base = ["asset", "materialize", "-m", "assets", "--select"]
    if select != "*":
        return [[(f"materialize {select}", [*base, select])]]
    from medmo_pipeline.config import load_recipe

    recipe = load_recipe()
    sources, benchmarks = longest_first(recipe.corpus), recipe.evaluation.benchmarks
    rest = "* and not key:corpus_shards and not key:corpus_sources"
    evaluations = "key:*_eval_table or key:stage_ablation"
    return [[(f"corpus_shards partition {source}", [*base, "corpus_sources,corpus_shards", "--partition", source])
             for source in sources],
            [(f"every other asset, benchmark {benchmarks[0]}", [*base, rest, "--partition", benchmarks[0]])],
            *([(f"evaluation on benchmark {b}", [*base, evaluations, "--partition", b])] for b in benchmarks[1:])]


def longest_first(corpus) -> list[str]:
    """The corpus partitions in the order that ends soonest when they run side by side: real datasets
    (their size is not known ahead) in recipe order, then synthetic sources by rows, most first."""
    rows = corpus.synthetic.train_rows if corpus.synthetic else {}
    return corpus.registry_sources() + sorted(corpus.synthetic_sources(), key=lambda s: -rows.get(s, 0))


def ui(port: int, host: str) -> int:
    """``dagster dev`` on this checkout's workspace, stopped with everything it started on SIGINT/SIGTERM."""
    from medmo_pipeline.supervise import run_supervised

    env = dagster_environment()
    print(f"Dagster UI on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    return run_supervised(_dagster("dev", "-w", "workspace.yaml", "-h", host, "-p", str(port)), env=env,
                          cwd=home.checkout_root())


def latest_materialization(key: str, partition: str | None = None, dagster_home: str | None = None) -> dict:
    """What ``assets.latest_materialization`` says about an asset (``{"error": ...}`` if never materialized)."""
    from medmo_pipeline.lineage import LineageError

    dagster_home = dagster_home or os.environ.get("DAGSTER_HOME") or str(home.dagster_home())
    if not Path(dagster_home).is_dir():
        raise LineageError(f"there is no Dagster instance at {dagster_home} to look {key!r} up in "
                           f"(MEDMO_HOME={home.medmo_home()})")
    # The Dagster layer reads the instance in a subprocess, so that this library never imports dagster.
    out = subprocess.run([sys.executable, "-m", "assets.latest_materialization", dagster_home, key,
                          *([partition] if partition else [])],
                         check=False, capture_output=True, text=True, cwd=home.checkout_root(), timeout=300)
    if out.returncode != 0:
        raise LineageError(f"could not read asset {key!r} from the Dagster instance at {dagster_home}:\n"
                           f"{out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def asset_path(key: str) -> Path:
    """The directory of an asset's latest materialization, read from the Dagster instance."""
    from medmo_pipeline.lineage import LineageError

    answer = latest_materialization(key)
    if "error" in answer:
        raise LineageError(f"asset {key!r} has never been materialized in the Dagster instance "
                           f"(MEDMO_HOME={home.medmo_home()})")
    if not answer["path"]:
        raise LineageError(f"asset {key!r}'s latest materialization (run {answer['run_id']}) reports no path")
    return Path(answer["path"])


def lineage(target: str, as_json: bool) -> int:
    from medmo_pipeline import lineage as lineage_lib

    try:
        path = Path(target).expanduser()
        if not path.exists():
            if os.sep in target or target.startswith("."):
                raise lineage_lib.LineageError(f"{target} does not exist")
            path = asset_path(target)
        document = lineage_lib.follow(path)
    except lineage_lib.LineageError as exc:
        print(f"medmo lineage: {exc}", file=sys.stderr)
        return 2
    print((lineage_lib.format_json if as_json else lineage_lib.format_text)(document), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["rehearse"]:  # its own options (``medmo rehearse --help``)
        from medmo_pipeline.rehearsal.run import main as rehearse

        return rehearse(argv[1:])
    parser = argparse.ArgumentParser(prog="medmo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    recipe = argparse.ArgumentParser(add_help=False)
    recipe.add_argument("--recipe", default=None,
                        help="recipe name (embedded, paper) or YAML path (default: MEDMO_RECIPE, else embedded)")
    p_demo = sub.add_parser("demo", parents=[recipe], help="materialize the whole graph and print the headline scores")
    p_demo.add_argument("--select", default="*", help="Dagster asset selection (default: everything)")
    p_demo.add_argument("--cold", action="store_true",
                        help="start every job cold (no warm job host): slower, for comparing or debugging")
    p_mat = sub.add_parser("materialize", parents=[recipe], help="materialize assets, one line of progress per job")
    p_mat.add_argument("assets", nargs="+", metavar="ASSET", help="asset keys, e.g. stage1_checkpoint")
    p_mat.add_argument("--partition", default=None,
                       help="partition key of a partitioned asset (a corpus source, or a benchmark)")
    p_ui = sub.add_parser("ui", parents=[recipe], help="serve the Dagster UI")
    p_ui.add_argument("--port", type=int, default=3000)
    p_ui.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    sub.add_parser("paths", help="print where outputs live")
    sub.add_parser("rehearse", help="the paper recipe's structure on CPU at corpus scale (ZeRO-3, 2 processes)")
    p_lineage = sub.add_parser("lineage", help="print the chain that produced a checkpoint, back to the base model")
    p_lineage.add_argument("target", help="a checkpoint (or evaluation) directory, or an asset key such as rl_policy")
    p_lineage.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.command == "lineage":
        return lineage(args.target, args.json)
    from medmo_pipeline.config import RecipeError, resolve_recipe_path
    from medmo_pipeline.instance import InstanceConfigError
    from medmo_pipeline.lineage import LineageError

    try:
        if getattr(args, "recipe", None):
            # The Dagster commands (and the code location they load) read it from there.
            os.environ["MEDMO_RECIPE"] = str(resolve_recipe_path(args.recipe))
        if args.command == "demo":
            return demo(args.select, warm=not args.cold)
        if args.command == "materialize":
            return materialize(args.assets, args.partition)
        if args.command == "ui":
            return ui(args.port, args.host)
    except (InstanceConfigError, RecipeError, LineageError) as exc:  # say what is wrong, no traceback
        print(f"medmo {args.command}: {exc}", file=sys.stderr)
        return 2
    for name in ("medmo_home", "dagster_home", "corpus_dir", "models_dir", "checkpoints_dir", "eval_dir",
                 "reports_dir", "mlflow_dir"):
        print(f"{name:<16} {getattr(home, name)()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
