"""Hyperparameter search on the validation window: Hydra's Optuna sweeper, made resumable and safe.

`conf/hparams_search/*.yaml` select `OptunaSearchSweeper` (exposed to Hydra as
`hydra_plugins.ebr_search.ResumableOptunaSweeper`: Hydra only instantiates plugins from the
`hydra_plugins` namespace). Over hydra-optuna-sweeper's own sweeper it adds:

- the validation-window guard: a search whose composed config scores `eval.window=test`, or whose
  search space names `eval.window`, fails before any trial, with a message naming the key;
- resume: the study lives in SQLite in the sweep directory (`hydra.sweeper.storage`), and
  `hydra.sweeper.n_trials` is the study's total budget, not the number of trials of this
  invocation. Re-running the same command continues: trials that finished or failed count, a
  trial left running by a killed search is marked failed and its parameters queued again, and the
  job numbers (run directories) go on from the trials already in the study, so no trial reuses
  another's directory.

Each trial is an ordinary `ebr-train` job: `ebr.app.run_app` returns its `optimized_metric`
(read from the job's `metrics.json`, so a skipped job returns its recorded value) and raises for
a failed job, which the sweeper records as a failed trial (`max_failure_rate: 1.0` in the presets
keeps the study going).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("ebr.search")

# the only window a search may score: test is for the final runs
SEARCH_WINDOW = "val"
WINDOW_KEY = "eval.window"


class SearchConfigError(ValueError):
    """A search config that would tune on the test window (the message names `eval.window`)."""


class SearchStorageError(CompactHydraException):
    """The study's storage (`hydra.sweeper.storage`, the sweep's optuna.db) cannot be read; Hydra
    prints the message alone, which names the file and what to do."""


def open_study(storage: str, study_name: str, directions: list[Any]) -> tuple[Any, int, list[dict[str, Any]]]:
    """The search's study in `storage`, created or loaded, with `finished_trial_count`'s figures.

    Args:
        storage: `hydra.sweeper.storage` (e.g. sqlite:///<sweep dir>/optuna.db).
        study_name: `hydra.sweeper.study_name`.
        directions: the study's optimization directions.

    Returns:
        (the `optuna.Study`, trials done, the stale trials' parameters to run again).

    Raises:
        SearchStorageError: naming the file, when the storage holds no readable study (a damaged
            database, a file that is not one, a schema of another optuna version).
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        study = optuna.create_study(
            study_name=study_name, storage=storage, directions=directions, load_if_exists=True
        )
        return study, *finished_trial_count(study)
    except (SQLAlchemyError, RuntimeError) as error:  # optuna's schema-version refusal is a RuntimeError
        where = storage.removeprefix("sqlite:///") if storage.startswith("sqlite:///") else storage
        reason = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        raise SearchStorageError(
            f"the search's study storage {where} cannot be read ({type(error).__name__}: {reason}): "
            "restore it from a backup to resume the search, or start afresh: remove it together with "
            "the sweep's job folders (their numbers would be reused), or choose another hydra.sweep.dir"
        ) from error


def check_search_window(window: object, search_keys: Sequence[str] = ()) -> None:
    """Refuse a search that would read the test window.

    Args:
        window: the composed config's `eval.window`.
        search_keys: the keys the search varies (its params and command-line sweeps).

    Raises:
        SearchConfigError: when `window` is not "val" or `eval.window` is searched over.
    """
    if window != SEARCH_WINDOW:
        raise SearchConfigError(
            f"a hyperparameter search scores the validation window, but {WINDOW_KEY}={window}: "
            f"never tune on the test window (drop the {WINDOW_KEY} override, "
            f"or set {WINDOW_KEY}={SEARCH_WINDOW}); "
            "test is for the final runs, with the best trial's override file"
        )
    if WINDOW_KEY in search_keys:
        raise SearchConfigError(
            f"a hyperparameter search must not vary {WINDOW_KEY}: "
            f"it tunes on {WINDOW_KEY}={SEARCH_WINDOW} only"
        )


def searched_keys(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> list[str]:
    """The keys a search varies: its params' and the command line's sweeps (`key=a,b`, `key=choice(...)`).

    Args:
        params: `hydra.sweeper.params` (key -> value or sweep string).
        arguments: the command line's overrides, as the sweeper receives them.
    """
    parser = OverridesParser.create()
    entries = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    return [o.key_or_group for o in parser.parse_overrides(entries) if o.is_sweep_override()]


def finished_trial_count(study: Any) -> tuple[int, list[dict[str, Any]]]:
    """Mark trials a killed search left running as failed; count the trials that are done.

    Args:
        study: an `optuna.Study`.

    Returns:
        (trials finished, failed or pruned, not counting the stale ones; the stale trials'
        parameters, to be run again).
    """
    import optuna

    state = optuna.trial.TrialState
    stale = [t for t in study.get_trials(deepcopy=False) if t.state in (state.RUNNING, state.WAITING)]
    for trial in stale:
        if trial.state == state.RUNNING:
            study.tell(trial.number, state=state.FAIL)
            log.warning(
                "trial %d was left running by a killed search: marked failed, queued again", trial.number
            )
    done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished()]
    rerun = [dict(t.params) for t in stale if t.state == state.RUNNING and t.params]
    return len(done) - len(rerun), rerun


class OptunaSearchSweeper(OptunaSweeper):
    """hydra-optuna-sweeper's `OptunaSweeper` with a total trial budget, resume and the window guard.

    Takes the same arguments as `OptunaSweeper` (`hydra.sweeper.*`).
    """

    def sweep(self, arguments: list[str]) -> None:
        # optuna's SQLite storage runs alembic, whose plugin set-up logs a line per plugin at INFO
        logging.getLogger("alembic").setLevel(logging.WARNING)
        impl = self.sweeper
        config: DictConfig = impl.config
        window = OmegaConf.select(config, WINDOW_KEY, default=None)
        check_search_window(window, searched_keys(impl.params, arguments))
        metric = OmegaConf.select(config, "optimized_metric", default=None)
        if not metric:
            raise SearchConfigError("a hyperparameter search needs optimized_metric (e.g. recall@50)")
        # SQLite creates the database file but not its folder; Hydra makes the sweep dir only later
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        study, done, rerun = open_study(impl.storage, impl.study_name, impl._get_directions())
        for params in rerun:
            study.enqueue_trial(params)
        budget = int(impl.n_trials)
        impl.n_trials = max(0, budget - done)
        # trial number == job number, so a resumed search writes after the directories it has:
        # the next trial asked is the first queued one (queued trials hold their numbers already)
        waiting = [t.number for t in study.get_trials(deepcopy=False) if t.state.name == "WAITING"]
        impl.job_idx = min(waiting) if waiting else len(study.trials)
        if done and hasattr(impl.sampler, "reseed_rng"):
            # the same seed would draw the first invocation's random start-up points again
            impl.sampler.reseed_rng()
        log.info(
            "study %s (%s): %d of %d trials done, %d to run, optimizing %s on %s=%s",
            impl.study_name,
            impl.storage,
            done,
            budget,
            impl.n_trials,
            metric,
            WINDOW_KEY,
            window,
        )
        if impl.n_trials == 0 and not any(t.state.name == "COMPLETE" for t in study.trials):
            log.error("the study's budget is spent and no trial completed")
            return None
        return impl.sweep(arguments)
