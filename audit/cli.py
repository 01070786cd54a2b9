"""The `audit` command line. Errors the user can fix are one line and a non-zero exit, not a traceback."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
from pathlib import Path
from typing import Any

from audit.config import AuditConfig
from audit.errors import UsageError, describe_error, one_line
from audit.progress import progress_bars_off

log = logging.getLogger("audit")
STRICT_HELP = (
    "exit with an error (code 2) when an attack failed on a batch (out of memory, NaN logits...): such "
    "batches are stored as not_run:error, listed in the report, and retried by a resume"
)
__all__ = ["UsageError", "build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is one `--help` away), like every other error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)\n")


def _cmd_train(args: argparse.Namespace) -> None:
    import torch

    from audit.data import load_dataset
    from audit.train import TrainConfig, clean_accuracy, describe, pgd_accuracy, train
    from defenses.checkpoints import save_checkpoint

    _check_out_file(args.out)
    _check_device_option(args.device)
    for option, value in (("--epochs", args.epochs), ("--width", args.width)):
        if value <= 0:
            raise UsageError(f"{option} must be positive, not {value}")
    _check_eps(args.eps)
    config = TrainConfig(method=args.method, epochs=args.epochs, seed=args.seed, eps=args.eps, width=args.width)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, history = train(
        config,
        load_dataset("fashion-mnist", "train-only", args.data_dir),
        load_dataset("fashion-mnist", "validation", args.data_dir),
        device=args.device,
    )
    test = load_dataset("fashion-mnist", "test", args.data_dir)
    clean = clean_accuracy(model, test)
    robust = pgd_accuracy(model, test, config.eps, steps=20)
    command = " ".join(["audit", *sys.argv[1:]])
    save_checkpoint(
        model.cpu(),
        args.out,
        {
            "architecture": "demo_cnn",
            "arch_kwargs": {"width": config.width},
            "train_config": describe(config),
            "history": history,
            "command": command,
            "test_clean_accuracy": clean,
            f"test_pgd20_accuracy_linf_{config.eps:g}": robust,
        },
    )
    log.info(
        "wrote %s: clean %.2f%%, PGD-20 (Linf %g) %.2f%% on %d test images",
        args.out,
        100 * clean,
        config.eps,
        100 * robust,
        len(test),
    )


def _cmd_sparsify(args: argparse.Namespace) -> None:
    """Make a MeanSparse version of a shipped model: statistics from the training split, alpha from the paper's
    APGD-CE sweep on the held-out validation split (never the test set)."""
    from dataclasses import asdict

    from audit.data import load_dataset
    from audit.select_alpha import select_alpha
    from defenses import calibrate, sparsify
    from defenses.checkpoints import read_metadata, save_checkpoint
    from defenses.models.registry import CHECKPOINT_DIR, SHIPPED, load_shipped

    _check_out_file(args.out)
    if args.model not in SHIPPED:
        raise UsageError(f"--model {args.model!r} is not a shipped model; choose one of {', '.join(SHIPPED)}")
    _check_eps(args.eps)
    if args.n <= 0:
        raise UsageError(f"--n must be positive, not {args.n}")
    if not all(math.isfinite(a) and a >= 0 for a in args.alphas):
        raise UsageError(f"--alphas must be numbers 0 or more, not {' '.join(map(str, args.alphas))}")
    base = load_shipped(args.model)
    model = sparsify(base, 0.0)
    train = load_dataset("fashion-mnist", "train-only", args.data_dir)
    calibrate(model, [train.images[i : i + 500] for i in range(0, len(train), 500)])
    validation = load_dataset("fashion-mnist", "validation", args.data_dir).subset(args.n, args.seed)
    sweep = select_alpha(
        model, validation.images, validation.labels, "validation", args.eps, alphas=args.alphas, seed=args.seed
    )
    for alpha, clean, robust in zip(sweep.alphas, sweep.clean_accuracy, sweep.apgd_ce_accuracy):
        log.info(
            "alpha %.2f: clean %.2f%%, APGD-CE %.2f%% (validation, n=%d)",
            alpha,
            100 * clean,
            100 * robust,
            len(validation),
        )
    base_meta = read_metadata(CHECKPOINT_DIR / SHIPPED[args.model])
    save_checkpoint(
        model,
        args.out,
        {
            "architecture": base_meta["architecture"],
            "arch_kwargs": base_meta.get("arch_kwargs", {}),
            "meansparse": {
                "alpha": sweep.best_alpha,
                "placement": "activations",
                "statistics": "official",
                "statistics_split": "train-only",
            },
            "alpha_sweep": asdict(sweep),
            "base_model": args.model,
            "command": " ".join(["audit", *sys.argv[1:]]),
        },
    )
    log.info("wrote %s with alpha %g", args.out, sweep.best_alpha)


def _cmd_attacks(args: argparse.Namespace) -> None:
    from attacks.catalog import entries
    from attacks.registry import available
    from audit.config import SUITES

    print(
        "attacks (append +bpda-identity, +bpda-smooth-T<t> or +bpda-ensemble to a gradient attack, +eot<K> to any"
        " attack that queries the model, +survivors to run it last on what the others left, and @key=value"
        " budgets, e.g. apgd-t+bpda-smooth-T0.03@iters=500,restarts=5, square+survivors@restarts=5):"
    )
    for name in available():
        budgets = entries()[name].budget if name in entries() else None
        print(f"  {name:24s} budgets: {', '.join(budgets)}" if budgets else f"  {name}")
    print("suites:", ", ".join(SUITES))


def _cmd_eval(args: argparse.Namespace) -> None:
    """Clean and PGD-20 accuracy of the shipped demo models on the Fashion-MNIST test set."""
    from audit.data import load_dataset
    from audit.train import clean_accuracy, pgd_accuracy
    from defenses.models.registry import SHIPPED, load_shipped

    test = load_dataset("fashion-mnist", "test", args.data_dir).subset(args.n, args.seed)
    for name in args.models or list(SHIPPED):
        model = load_shipped(name)
        clean = clean_accuracy(model, test)
        robust = pgd_accuracy(model, test, args.eps, steps=20, seed=args.seed)
        print(
            f"{name:18s} clean {100 * clean:6.2f}%   PGD-20 (Linf {args.eps:g}) {100 * robust:6.2f}%   "
            f"({len(test)} test images)"
        )


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-size takes a positive number or `auto`, not {text!r}") from None


def _audit_config(args: argparse.Namespace) -> Any:  # an AuditConfig, imported inside to keep --help light
    from attacks.names import split_attack_list

    if not args.model:
        raise UsageError("give --model (a shipped name, PATH.py:FACTORY, or a RobustBench name with --robustbench-dir)")
    from defenses.models.robustbench import fill_run_defaults

    # A RobustBench entry knows its dataset, threat model, eps and published AutoAttack number (the default claim).
    fill_run_defaults(args, {"dataset": "fashion-mnist", "norm": "Linf", "eps": 0.1})
    return AuditConfig(
        model=args.model,
        dataset=args.dataset,
        norm=args.norm,
        eps=args.eps,
        n=args.n,
        suite=args.suite,
        budget=args.budget,
        seed=args.seed,
        mode=args.mode,
        batch_size=AuditConfig.batch_size if args.batch_size == "auto" else args.batch_size,
        batch_size_auto=args.batch_size == "auto",
        proposal_precision=args.proposal_precision,
        diagnostics_n=args.diagnostics_n,
        checkpoint=args.checkpoint,
        robustbench_dir=args.robustbench_dir,
        meansparse_alpha=args.meansparse_alpha,
        claim=args.claim,
        trust_checkpoint=args.trust_checkpoint,
        attacks=tuple(split_attack_list(args.attacks)) if args.attacks is not None else None,
        transfer_from=tuple(args.transfer_from),
        keep_examples=args.keep_examples,
        static_model=args.static_model,
    )


def _cmd_run(args: argparse.Namespace) -> None:
    from audit.distributed import init_from_environment, shutdown
    from audit.inputs import check_device
    from audit.pipeline import run_audit
    from audit.summary import summary_lines

    _check_writable(args.out)
    check_device(args.device)  # before anything is moved there: a missing CUDA is one line, not an AssertionError
    shard, device = init_from_environment(args.device)
    try:
        results = run_audit(
            _audit_config(args),
            args.out,
            data_dir=args.data_dir,
            device=device,
            progress=not args.quiet,
            shard=shard,
            base_run=args.base_run,
        )
    finally:
        shutdown(shard)
    if results is not None:
        print("\n".join([*summary_lines(results), f"  report: {args.out / 'report.html'}"]))
        _check_strict(args, results)


def _check_strict(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """--strict: a batch an attack failed on (stored as not_run:error) makes the exit non-zero."""
    failed = results.get("failed_batches", [])
    if args.strict and failed:
        raise UsageError(
            f"--strict: {len(failed)} batch(es) failed and were not run ({failed[0]['attack']}: "
            f"{failed[0]['error']}); the report lists them; re-run the same command to retry them"
        )


def _cmd_extend(args: argparse.Namespace) -> None:
    from attacks.names import split_attack_list
    from audit.distributed import init_from_environment, shutdown
    from audit.extend import extend_audit
    from audit.inputs import check_device
    from audit.summary import summary_lines

    check_device(args.device)
    shard, device = init_from_environment(args.device)
    try:
        results = extend_audit(
            args.dir,
            split_attack_list(args.attacks),
            data_dir=args.data_dir,
            device=device,
            progress=not args.quiet,
            trust_checkpoint=args.trust_checkpoint,
            shard=shard,
        )
    finally:
        shutdown(shard)
    if results is not None:
        print("\n".join([*summary_lines(results), f"  report: {args.dir / 'report.html'}"]))
        _check_strict(args, results)


def _check_out_file(out: Path) -> None:
    """An output file goes into an existing, writable folder: checked before minutes of training or sweeping."""
    folder = out.parent
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; give a file name, e.g. {out / 'model.safetensors'}")
    if not folder.is_dir():
        raise UsageError(f"--out {out}: folder {folder} does not exist; create it first (mkdir -p {folder})")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: folder {folder} is not writable; choose another --out")


def _check_eps(eps: float) -> None:
    if not (0 < eps < 1):
        raise UsageError(f"--eps is a Linf radius on [0, 1] images (e.g. 0.1), so in (0, 1), not {eps}")


def _check_device_option(device: str) -> None:
    from audit.inputs import check_device

    check_device(device)


def _cmd_verify(args: argparse.Namespace) -> int:
    from audit.inputs import check_device
    from audit.verify import verify_run

    check_device(args.device)
    verification = verify_run(
        args.dir,
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        trust_checkpoint=args.trust_checkpoint,
        progress=not args.quiet,
    )
    print("\n".join(verification.lines()))
    return 0 if verification.ok else 1


def _cmd_export(args: argparse.Namespace) -> None:
    from audit.export import export_run

    print(f"wrote {export_run(args.dir, args.format, args.out)}")


def _check_writable(out: Path) -> None:
    """Fail early on an unwritable --out, without creating it: the run creates it only after its input checks."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UsageError(f"output directory {out} is not writable ({existing} is a file); choose another --out")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {out} is not writable ({existing} is read-only); choose another --out")


def _cmd_report(args: argparse.Namespace) -> None:
    """Findings, verdict, results.json and the reports again, from the stored records alone (no model needed);
    a directory holding only results.json (e.g. copied from elsewhere) gets its reports re-rendered."""
    from audit.pipeline import derive_results
    from audit.report import render_reports
    from audit.store import CONFIG_FILE

    if (Path(args.dir) / CONFIG_FILE).exists():
        derive_results(args.dir)
    md, html = render_reports(args.dir)
    print(f"wrote {md} and {html}")


def _cmd_compare(args: argparse.Namespace) -> None:
    from audit.comparison import compare

    if args.out is not None:
        _check_out_file(args.out)
    print(compare(args.dir_a, args.dir_b, args.out))


def _cmd_demo(args: argparse.Namespace) -> None:
    from audit.demo import run_demo

    print(run_demo(Path(args.out), n=args.n, data_dir=args.data_dir, progress=not args.quiet))


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="a shipped model (demo-standard, demo-adversarial, demo-meansparse), PATH.py:FACTORY, "
        "or a RobustBench name with --robustbench-dir",
    )
    p.add_argument(
        "--dataset",
        default=None,
        help="fashion-mnist (default), mnist, cifar10, cifar100, imagenet, foolbox-cifar10, "
        "foolbox-cifar100, foolbox-imagenet; with --robustbench-dir the entry's dataset",
    )
    p.add_argument("--data-dir", default=None, help="folder with the dataset files (default: the Debian package's)")
    p.add_argument(
        "--norm",
        default=None,
        choices=["Linf", "L2"],
        help="Linf (default); with --robustbench-dir the entry's threat model",
    )
    p.add_argument(
        "--eps",
        type=float,
        default=None,
        help="radius as a fraction of the [0, 1] range (8/255 = 0.031); default 0.1, or the RobustBench entry's eps",
    )
    p.add_argument("--n", type=int, default=AuditConfig.n, help="number of test samples (seeded choice)")
    p.add_argument("--suite", default=AuditConfig.suite, help="autoattack, adaptive, full, quick, spatial")
    p.add_argument(
        "--budget",
        default=AuditConfig.budget,
        choices=["quick", "standard", "thorough"],
        help="how far up the strength curves the full/adaptive suite goes: the strongest gradient attack "
        "again at 300 iterations (standard); or at 300 and 1000 iterations and 5 and 10 restarts, "
        "Square at 20000 queries, BPDA with every APGD loss on every surrogate and their ensemble, "
        "and Square with 5 restarts on the survivors, last (thorough)",
    )
    p.add_argument(
        "--transfer-from",
        action="append",
        default=[],
        metavar="SPEC",
        help="also run APGD-CE crafted on this model (any --model spec, repeatable) and judged on the "
        "audited one, as RobustBench did for Kang2021Stable",
    )
    p.add_argument(
        "--static-model",
        default=None,
        metavar="SPEC",
        help="for a test-time defense (a forward that optimises its input): the classifier inside it, as "
        "a dotted submodule name (e.g. classifier) or any --model spec; default: traced from the "
        "forward (the submodule whose output is the final output)",
    )
    p.add_argument(
        "--attacks",
        default=None,
        help="comma-separated attack names instead of a suite (see `audit attacks`), e.g. apgd-ce,square",
    )
    p.add_argument(
        "--mode",
        default=AuditConfig.mode,
        choices=["full", "cascade"],
        help="full: every attack on every sample (diagnostics need it); cascade: only still-robust samples",
    )
    p.add_argument("--seed", type=int, default=AuditConfig.seed)
    p.add_argument(
        "--batch-size",
        type=_batch_size,
        default=AuditConfig.batch_size,
        help="samples per batch, or `auto`: the largest that fits, backing off on out-of-memory",
    )
    p.add_argument(
        "--proposal-precision",
        default=AuditConfig.proposal_precision,
        help="float32, tf32 or bfloat16: what the attacks' own passes run in (faster on a GPU; never "
        "inflates a success: the judge re-scores in float32, TF32 off)",
    )
    p.add_argument(
        "--diagnostics-n",
        type=int,
        default=AuditConfig.diagnostics_n,
        help="samples used by the diagnostics (default: %(default)s, as in the calibration)",
    )
    p.add_argument("--checkpoint", default=None, help="weights for PATH.py:FACTORY (safetensors or .pt)")
    p.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow unpickling arbitrary objects from a legacy checkpoint (runs code from the file!)",
    )
    p.add_argument("--robustbench-dir", default=None, help="RobustBench model_dir: <dir>/<dataset>/<threat>/<name>.pt")
    p.add_argument("--meansparse-alpha", type=float, default=None, help="sparsify the model on the fly with this alpha")
    p.add_argument(
        "--base-run",
        type=Path,
        default=None,
        metavar="DIR",
        help="a finished audit of this MeanSparse model's base (e.g. the model before sparsifying) with "
        "the same --n, --seed and threat: the gain table uses its attacks instead of attacking the "
        "base again with AutoAttack (its clean predictions are checked first)",
    )
    p.add_argument(
        "--keep-examples",
        default=AuditConfig.keep_examples,
        choices=["all", "worst", "none"],
        help="adversarial examples kept as evidence (audit verify, audit export): every broken (sample, "
        "attack), the lowest-margin one per sample (default), or none",
    )
    p.add_argument(
        "--claim",
        type=float,
        default=None,
        help="the robust accuracy a paper claims, as a fraction (RobustBench entries: its published "
        "AutoAttack accuracy)",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--strict", action="store_true", help=STRICT_HELP)
    p.add_argument("--out", type=Path, required=True, help="output directory (re-running with it resumes)")


def build_parser() -> argparse.ArgumentParser:
    # --debug/--quiet work before or after the command name; SUPPRESS keeps a subcommand from resetting them.
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks")
    common.add_argument(
        "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars; only warnings and errors"
    )
    parser = _Parser(prog="audit", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **k: _add_parser(*a, parents=[common], **k)  # type: ignore[method-assign]

    train = sub.add_parser("train", help="train the demo CNN on Fashion-MNIST (standard or adversarial)")
    train.add_argument("--method", choices=["standard", "fgsm", "pgd"], default="standard")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--eps", type=float, default=0.1)
    train.add_argument("--width", type=int, default=16)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data-dir", default=None)
    train.add_argument("--device", default="cpu")
    train.add_argument("--out", type=Path, required=True)
    train.set_defaults(handler=_cmd_train)

    run = sub.add_parser("run", help="audit one model: attacks, diagnostics, verdict, report")
    _add_run_options(run)
    run.set_defaults(handler=_cmd_run)

    report = sub.add_parser("report", help="re-render report.md/report.html from stored results")
    report.add_argument("dir", type=Path)
    report.set_defaults(handler=_cmd_report)

    extend = sub.add_parser("extend", help="add attacks to a finished audit (e.g. what attack-convergence asks for)")
    extend.add_argument("dir", type=Path, help="the finished audit's --out")
    extend.add_argument(
        "--attacks",
        required=True,
        help="comma-separated attack names, run after everything the audit ran, e.g. square+survivors@queries=60000",
    )
    extend.add_argument("--data-dir", default=None, help="folder with the dataset files, as for the run")
    extend.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="as for the run: allow unpickling a legacy checkpoint (runs code from the file!)",
    )
    extend.add_argument("--device", default="cpu", help="cpu or cuda")
    extend.add_argument("--strict", action="store_true", help=STRICT_HELP)
    extend.set_defaults(handler=_cmd_extend)

    verify = sub.add_parser("verify", help="check a run's stored adversarial examples on the model (forwards only)")
    verify.add_argument("dir", type=Path, help="the audit's --out")
    verify.add_argument(
        "--model",
        default=None,
        help="check on this model instead of the run's own (e.g. the author's copy): a shipped name or PATH.py:FACTORY",
    )
    verify.add_argument("--checkpoint", default=None, help="weights for the model (safetensors or .pt)")
    verify.add_argument(
        "--trust-checkpoint", action="store_true", help="allow unpickling a .pt checkpoint (only for files you trust)"
    )
    verify.add_argument("--device", default="cpu", help="cpu or cuda")
    verify.set_defaults(handler=_cmd_verify)

    export = sub.add_parser("export", help="write a run's adversarial examples for other tools")
    export.add_argument("dir", type=Path, help="the audit's --out")
    export.add_argument(
        "--format",
        required=True,
        choices=["robustbench", "npz"],
        help="robustbench: adv_complete.pt (AutoAttack's layout); npz: every kept example",
    )
    export.add_argument("--out", type=Path, default=None, help="the file to write (default: inside DIR)")
    export.set_defaults(handler=_cmd_export)

    compare = sub.add_parser("compare", help="two audits side by side (e.g. base vs MeanSparse)")
    compare.add_argument("dir_a", type=Path)
    compare.add_argument("dir_b", type=Path)
    compare.add_argument("--out", type=Path, default=None, help="write the comparison (Markdown) here too")
    compare.set_defaults(handler=_cmd_compare)

    demo = sub.add_parser("demo", help="audit the shipped adversarially trained model and its MeanSparse version")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--n", type=int, default=None, help="test samples per model (default: see audit.demo)")
    demo.add_argument("--data-dir", default=None)
    demo.set_defaults(handler=_cmd_demo)

    sp = sub.add_parser("sparsify", help="make the demo MeanSparse model (alpha chosen on the validation split)")
    sp.add_argument("--model", default="demo-adversarial")
    sp.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8])
    sp.add_argument("--eps", type=float, default=0.1)
    sp.add_argument("--n", type=int, default=AuditConfig.n, help="validation samples for the sweep")
    sp.add_argument("--seed", type=int, default=AuditConfig.seed)
    sp.add_argument("--data-dir", default=None)
    sp.add_argument("--out", type=Path, required=True)
    sp.set_defaults(handler=_cmd_sparsify)

    attacks = sub.add_parser("attacks", help="list attacks and suites")
    attacks.set_defaults(handler=_cmd_attacks)

    evaluate = sub.add_parser("eval", help="clean and PGD-20 accuracy of the shipped demo models")
    evaluate.add_argument("models", nargs="*")
    evaluate.add_argument("--eps", type=float, default=0.1)
    evaluate.add_argument("--n", type=int, default=None)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--data-dir", default=None)
    evaluate.set_defaults(handler=_cmd_eval)
    return parser


def _interrupted(args: argparse.Namespace, argv: list[str]) -> str:
    """Ctrl-C: what was kept and how to go on, in one line."""
    if args.command not in ("run", "extend"):
        return "audit: interrupted"
    out = args.out if args.command == "run" else args.dir
    if not (out / "config.json").exists():
        return f"audit: interrupted before any result was stored; nothing was written to {out}"
    import shlex

    same = "with the same --out" if args.command == "run" else "on the same directory"
    return (
        f"audit: interrupted; the results finished so far are kept in {out}; to resume, run the same command "
        f"{same}: audit {shlex.join(argv)}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # a usage error (one line, already printed) or --help
        return exit_.code if isinstance(exit_.code, int) else 2
    args.quiet, args.debug = getattr(args, "quiet", False), getattr(args, "debug", False)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for handler in logging.getLogger().handlers:  # the console; `audit run` adds a full log file of its own
        handler.setLevel(logging.WARNING if args.quiet else logging.INFO)
    try:
        with progress_bars_off() if args.quiet else contextlib.nullcontext():
            code = args.handler(args)
    except KeyboardInterrupt:
        # Records are appended and fsynced as they are produced, so everything finished is on disk already.
        print(_interrupted(args, argv), file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place that turns errors into messages
        if args.debug:
            raise
        message = describe_error(error)
        if message is None:
            raise
        print(f"audit: error: {message}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
