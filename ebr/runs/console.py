"""What a job prints: the one place that silences known-harmless third-party warnings and log lines,
each with its reason, and the timed line each stage of a job writes.

`quiet_console(verbose)` is called once per job by the application shell (ebr.app); with
`verbose=true` it silences nothing, so every warning and third-party line shows. ebr's own warnings
are fixed where they arise, not filtered here. `stage(what)` logs how long a stage took (data,
corpus, fit, index build, evaluation), so a long stage is not a silent one.
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

log = logging.getLogger("ebr")


@dataclass(frozen=True)
class HarmlessWarning:
    """A third-party warning silenced by default.

    Args:
        message: a regular expression the start of the warning's message matches.
        category: the warning's class.
        reason: why it says nothing about the job (shown nowhere but here).
    """

    message: str
    category: type[Warning]
    reason: str


HARMLESS_WARNINGS = (
    HarmlessWarning(
        "HeuristicalStorageReservation is known to cause issues",
        FutureWarning,
        "torchrec's planner builds this default reservation itself; the tables ebr shards on a CPU or "
        "one GPU fit with room to spare, so the over-estimate it warns of changes no plan",
    ),
    HarmlessWarning(
        "`broadcast_buffers` is deprecated",
        FutureWarning,
        "torchrec's data-parallel wrapper passes broadcast_buffers=False itself; the towers hold no "
        "buffers that ranks would need to share",
    ),
    HarmlessWarning(
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        Warning,
        "Lightning's own pytree helper calls the deprecated torch API; nothing ebr passes changes it",
    ),
    HarmlessWarning(
        "Your `IterableDataset` has `__len__` defined",
        UserWarning,
        "ebr's batches are built in the main process (no DataLoader workers), where the length is exact",
    ),
    HarmlessWarning(
        r"It is recommended to use `self.log\('val/loss'",
        UserWarning,
        "the validation loss is averaged over ranks by the epoch selection itself "
        "(ebr.training.selection); a one-process job has nothing to synchronize",
    ),
    HarmlessWarning(
        ".*dataloader is not resumable",
        UserWarning,
        "the batches resume where the checkpoint says (TwoTowerDataModule.load_state_dict), which "
        "Lightning cannot see for a plain iterable",
    ),
)

# third-party INFO lines that say nothing about the job: fbgemm's library loads and embedding-kernel
# argument dumps (logged on the root logger), faiss's loader, torchrec's sharding internals, and
# torch.fx's note that its tracing check also answers for torch.export (torchrec's tracing asks it)
_QUIET_LOGGERS = {
    "faiss": logging.WARNING,
    "faiss.loader": logging.WARNING,
    "torchrec": logging.WARNING,
    "fbgemm_gpu": logging.WARNING,
    "torch.fx._symbolic_trace": logging.ERROR,
}
_NOISY_ROOT_PREFIXES = ("Successfully loaded: 'fbgemm", "[TBE=")


class _ThirdPartyNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        message = record.getMessage()
        if record.name == "root" and message.startswith(_NOISY_ROOT_PREFIXES):
            return False
        return not (record.name.startswith("pytorch_lightning") and "Tip:" in message)


def quiet_console(verbose: bool = False) -> None:
    """Silence the known-harmless third-party warnings and INFO lines (nothing with `verbose`).

    Args:
        verbose: show everything (the `verbose` config key).
    """
    if verbose:
        return
    for harmless in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=harmless.message, category=harmless.category)
    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    for logger in (logging.getLogger(), logging.getLogger("pytorch_lightning.utilities.rank_zero")):
        if not any(isinstance(f, _ThirdPartyNoise) for f in logger.filters):
            logger.addFilter(_ThirdPartyNoise())


# a stage quicker than this is logged at DEBUG only: the console names the stages that take time
STAGE_LINE_SECONDS = 0.5


@contextmanager
def stage(what: str) -> Iterator[None]:
    """Log one line, `<what>: <seconds> s`, when the stage inside the block ends (at INFO when it took
    at least `STAGE_LINE_SECONDS`).

    Args:
        what: the stage ("data (loaded or generated) and split", "fit PureSVD", ...).
    """
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    log.log(logging.INFO if seconds >= STAGE_LINE_SECONDS else logging.DEBUG, "%s: %.1f s", what, seconds)
