"""What train.py and eval.py share: flag parsing, one-line errors, multi-process start-up."""

from __future__ import annotations

import logging as std_logging
import os
import sys
from typing import Any, Callable

from absl import app, flags, logging

from smh_jax.errors import UserError  # noqa: F401  (re-exported for the CLIs)

EXIT_USER_ERROR = 2
EXIT_TRAINING_ERROR = 1
EXIT_PREEMPTED = 143  # 128 + SIGTERM, what schedulers expect from a preempted job


def define_distributed_flags() -> None:
    flags.DEFINE_bool("distributed", False,
                      "Call jax.distributed.initialize() with auto-detection (TPU pods, "
                      "SLURM, ...). Implied by --coordinator_address.")
    flags.DEFINE_string("coordinator_address", None,
                        "host:port of process 0, for a manual multi-process launch.")
    flags.DEFINE_integer("num_processes", None, "Number of processes (manual launch).")
    flags.DEFINE_integer("process_id", None, "This process's index (manual launch).")


def initialize_distributed() -> None:
    """Joins the processes into one JAX runtime when launched as several."""
    f = flags.FLAGS
    if not (f.distributed or f.coordinator_address):
        return
    import jax

    # Cross-process collectives between CPU devices (tests, laptops) go through gloo; the
    # setting only concerns the CPU backend. (Querying the backend here would initialize
    # it, which must not happen before jax.distributed.initialize.)
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f.coordinator_address,
                               num_processes=f.num_processes, process_id=f.process_id)
    logging.info("process %d of %d, %d local / %d global devices", jax.process_index(),
                 jax.process_count(), jax.local_device_count(), jax.device_count())


def _one_line(error: BaseException) -> str:
    # ml_collections wraps a KeyError in an AttributeError; str(KeyError) is a repr (quoted,
    # quotes escaped), its argument is the message.
    while len(error.args) == 1 and isinstance(error.args[0], BaseException):
        error = error.args[0]
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split())


def _parse_flags(argv: list[str]) -> list[str]:
    """absl's parser, but config-override mistakes become one line, not a traceback."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _fail(f"{_one_line(e)} (see --helpfull)", EXIT_USER_ERROR)
    except (AttributeError, KeyError, ValueError, TypeError, FileNotFoundError,
            SyntaxError) as e:  # raised by ml_collections while loading/overriding configs
        _fail(f"bad --config: {_one_line(e)}", EXIT_USER_ERROR)
    raise AssertionError("unreachable")


def _fail(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


class _QuietLibraries:
    """Drops INFO records of chatty libraries (Orbax logs every file it writes)."""

    NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}absl{os.sep}", f"{os.sep}jax{os.sep}")

    def filter(self, record) -> bool:
        if record.levelno >= std_logging.WARNING:
            return True
        return not any(part in record.pathname for part in self.NOISY)


def run(main: Callable[[list[str]], Any]) -> None:
    """app.run with user errors printed on one line and meaningful exit codes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.get_absl_handler().addFilter(_QuietLibraries())
    from smh_jax.training.preemption import Preempted
    from smh_jax.training.trainer import TrainingError

    def guarded(argv):
        try:
            return main(argv)
        except UserError as e:
            _fail(_one_line(e), EXIT_USER_ERROR)
        except TrainingError as e:
            _fail(_one_line(e), EXIT_TRAINING_ERROR)
        except Preempted as e:
            logging.warning("%s", e)
            print(f"preempted: {e}", file=sys.stderr, flush=True)
            sys.exit(EXIT_PREEMPTED)

    app.run(guarded, flags_parser=_parse_flags)


def format_table(rows: list[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def summary_table(summary: dict[str, Any]) -> str:
    fraction = summary.get("achieved_fraction")
    return format_table([
        ("model", f"{summary['model']} ({summary['method']})"),
        ("dataset", summary["dataset"]),
        ("accuracy (top-1)", f"{summary['accuracy']:.4f}"),
        ("trainable variables", f"{summary['trainable_params']:,}"),
        ("dense parameters", f"{summary['dense_params']:,}"),
        ("fraction", f"{fraction:.4f}" if fraction is not None else "-"),
        ("steps", str(summary["steps"])),
        ("wall time", f"{summary['wall_seconds']:.0f} s"),
    ])
