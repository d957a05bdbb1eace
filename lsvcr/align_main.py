"""Stage 1's own entry point, for launchers: ``python -m lsvcr.align_main --data D --out O ...``.

One process, ``torchrun --nproc-per-node N -m lsvcr.align_main ...`` or HF accelerate's launcher::

    accelerate launch --multi_gpu --num_processes 2 -m lsvcr.align_main --data runs/data --out runs/aligned

(``--multi_gpu`` is accelerate's torchrun launcher; without CUDA the processes join a gloo group on
the CPU. accelerate's ``--cpu`` starts several processes only through ``mpirun``: with ``--cpu``
alone it runs one process.) Every rank reads the environment the launcher sets (RANK, WORLD_SIZE,
MASTER_ADDR, ...) in ``lsvcr.distributed.init_from_env``; the batch is global, so N processes compute
the losses and the update of one process on the same batch.

The options are ``AlignConfig``'s fields, one flag per field (``--history-len``, ``--llm-kind``, ...),
with the four that ``lsvcr train`` names after the stage (``--align-batch-size``, ``--align-lr``,
``--align-epochs``, ``--align-steps``), plus ``--data``, ``--out``, ``--resume``, ``--allow-pickle``
and ``-q``. ``argv`` writes a config back as these flags (``lsvcr train --stage align --ddp N`` starts
this module that way), so the flags have one definition: the dataclass. This module never imports
the CLI.
"""
from __future__ import annotations

import argparse
import os
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from lsvcr.align import AlignConfig
from lsvcr.errors import InputError

STAGE_FLAGS = {"batch_size": "--align-batch-size", "lr": "--align-lr", "epochs": "--align-epochs",
               "max_steps": "--align-steps"}  # as `lsvcr train` names them


def flag(name: str) -> str:
    return STAGE_FLAGS.get(name, "--" + name.replace("_", "-"))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lsvcr.align_main",
                                description="LSVCR stage 1 (alignment with an LLM under LoRA) into an aligned directory.")
    p.add_argument("--data", type=Path, required=True, help="dataset directory (LSVCR layout)")
    p.add_argument("--out", type=Path, required=True, help="aligned directory to write")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint (same options)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty OUT")
    p.add_argument("--allow-pickle", action="store_true", help="read the original code's pickled id lists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    hints = typing.get_type_hints(AlignConfig)
    for f in fields(AlignConfig):
        kind = hints[f.name]
        default = f.default if f.default is not MISSING else None
        if kind is bool:
            p.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=default,
                           help=f"[default {default}]")
            continue
        optional = type(None) in typing.get_args(kind)
        base = next(a for a in typing.get_args(kind) if a is not type(None)) if optional else kind
        p.add_argument(flag(f.name), dest=f.name, type=base, default=default, metavar=base.__name__.upper(),
                       help=f"[default {default}]")
    return p


def parse(argv: list[str]) -> tuple[argparse.Namespace, AlignConfig]:
    """(the run options, the AlignConfig) of a command line."""
    args = parser().parse_args(argv)
    cfg = AlignConfig(**{f.name: getattr(args, f.name) for f in fields(AlignConfig)})
    return args, cfg


def argv(cfg: AlignConfig, data: Path, out: Path, resume: bool = False, allow_pickle: bool = False,
         quiet: bool = False, overwrite: bool = False) -> list[str]:
    """The command line that ``parse`` reads back as ``cfg`` (fields at their default are left out)."""
    args = ["--data", str(data), "--out", str(out)]
    for f in fields(AlignConfig):
        value = getattr(cfg, f.name)
        if value == f.default:
            continue
        if isinstance(value, bool):
            args.append(flag(f.name) if value else "--no-" + flag(f.name)[2:])
        else:
            args += [flag(f.name), str(value)]
    return args + [name for name, on in (("--resume", resume), ("--allow-pickle", allow_pickle), ("-q", quiet),
                                         ("--overwrite", overwrite)) if on]


def main(args: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.text import Text

    import atomic
    from lsvcr.train import align_model

    err = Console(stderr=True, markup=False)
    try:
        opts, cfg = parse(sys.argv[1:] if args is None else args)
        rep = align_model(opts.data, opts.out, cfg, None if opts.quiet else err, opts.allow_pickle, opts.resume,
                          opts.overwrite)
    except (InputError, atomic.OutputError) as e:
        err.print(Text.assemble(("error:", "bold red"), f" {e}"), highlight=False, soft_wrap=True)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        last = rep["losses"][-1] if rep["losses"] else {}
        world = int(os.environ.get("WORLD_SIZE", "1"))
        print(f"stage 1: {rep['steps']} steps on {world} process{'es' if world > 1 else ''}, last loss "
              + " ".join(f"{k} {v:.4f}" for k, v in last.items()) + f"; wrote {opts.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
