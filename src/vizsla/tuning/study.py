"""The Optuna study behind a tuning job: storage, sampler and pruner from the strategy, create or resume.

Storage: a journal file in the tuning job directory by default -- safe for several processes writing at
once, unlike SQLite (Optuna FAQ) -- or any RDB URL (postgresql://...) shared by workers on many machines.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vizsla.errors import UserError

if TYPE_CHECKING:
    import optuna

    from vizsla.tuning.tune_spec import TuneSpec

log = logging.getLogger(__name__)

SPEC_ATTR = "vizsla_tune_spec"
JOURNAL_NAME = "study.journal"
# Fields that define what a study measures: changing them under a running study would mix incomparable
# trials, so they are refused on resume (a warm start from the old job is the way to change them).
IDENTITY_FIELDS = ("objective", "ranges", "strategy")


def storage_url(spec: TuneSpec, tune_dir: Path) -> str:
    """The storage of this tuning job as a string workers can be given: an RDB URL or a journal path."""
    if spec.storage:
        return spec.storage
    return str((Path(tune_dir) / JOURNAL_NAME).resolve())


def is_rdb_url(url: str) -> bool:
    return "://" in url and not url.startswith("file://")


def create_storage(url: str) -> optuna.storages.BaseStorage:
    """Open the storage named by `url`: an RDB (SQLAlchemy URL) or a journal file (path or file:// URL)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if is_rdb_url(url):
        if url.startswith("sqlite"):
            log.warning("SQLite is not safe for parallel tuning workers; prefer the default journal file")
        try:
            return _open_rdb(url)
        except ImportError as exc:
            raise UserError(
                f"cannot open storage {_redact(url)}: {exc}",
                hint="for PostgreSQL install the driver: pip install 'vizsla[postgres]'",
            ) from None
        except Exception as exc:  # sqlalchemy OperationalError etc.: a wrong URL or a server that is down
            raise UserError(
                f"cannot connect to storage {_redact(url)}: {type(exc).__name__}: {exc}"
            ) from None
    path = Path(url.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _open_rdb(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """RDBStorage, retried: two workers creating the tables of an empty PostgreSQL database at the same
    moment collide on CREATE TYPE (a unique violation); the loser succeeds once the tables exist."""
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except (IntegrityError, ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def startup_trials(max_jobs: int) -> int:
    """Random trials before TPE models the results: a third of the budget, 3 to 10 (Optuna's default 10
    would make a 12-trial budget almost pure random search)."""
    return max(3, min(10, max_jobs // 3))


def create_sampler(spec: TuneSpec, seed: int | None) -> optuna.samplers.BaseSampler:
    """The sampler of the strategy: TPE (multivariate) for Bayesian and Hyperband, random, or grid."""
    import optuna

    from vizsla.tuning.space import grid_space

    if spec.strategy == "Random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.strategy == "Grid":
        return optuna.samplers.GridSampler(grid_space(spec.ranges), seed=seed)
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=startup_trials(spec.max_jobs or 10)
    )


def create_pruner(spec: TuneSpec, epochs: int) -> optuna.pruners.BasePruner:
    """Hyperband (successive halving over epochs), median stopping for early_stopping Auto, or none."""
    import optuna

    if spec.strategy == "Hyperband":
        max_resource = spec.hyperband.max_resource or epochs
        return optuna.pruners.HyperbandPruner(
            min_resource=spec.hyperband.min_resource,
            max_resource=max_resource,
            reduction_factor=spec.hyperband.reduction_factor,
        )
    if spec.early_stopping == "Auto":
        # SageMaker's rule: stop a job worse than the median of earlier jobs at the same epoch.
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def training_epochs(spec: TuneSpec) -> int:
    """The epochs a trial trains: a tuned range's maximum, else the static value, else the default."""
    from vizsla.spec import TrainSpec

    if spec.is_script:
        return script_epochs(spec) or spec.hyperband.max_resource or 1
    for name, rng in spec.ranges.items():
        if name in ("epochs", "train.epochs"):
            return int(getattr(rng, "max", None) or max(rng.values))  # type: ignore[union-attr]
    return int(spec.training.get("train", {}).get("epochs", TrainSpec.model_fields["epochs"].default))


# SageMaker infers Hyperband's MaxResource from these static hyperparameters (HyperbandStrategyConfig).
EPOCH_NAMES = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")


def script_epochs(spec: TuneSpec) -> int | None:
    """A script's epochs: the tuned range's maximum or the static hyperparameter, by SageMaker's names."""
    for name, rng in spec.ranges.items():
        if name in EPOCH_NAMES:
            return int(getattr(rng, "max", None) or max(rng.values))  # type: ignore[union-attr]
    static = (spec.script or {}).get("hyperparameters") or {}
    for name in EPOCH_NAMES:
        try:
            return int(static[name])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def open_study(spec: TuneSpec, tune_dir: Path, *, seed_offset: int = 0) -> optuna.Study:
    """Create the study, or load it (resume / another worker), checking that it measures the same."""
    import optuna

    url = storage_url(spec, tune_dir)
    storage = create_storage(url)
    name = study_name_of(spec)
    existing = _existing_trials(storage, name)
    seed = None if spec.random_seed is None else spec.random_seed + existing + seed_offset
    direction = "maximize" if spec.objective.type == "Maximize" else "minimize"
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=create_sampler(spec, seed),
        pruner=create_pruner(spec, training_epochs(spec)),
        direction=direction,
        load_if_exists=True,
    )
    saved = study.user_attrs.get(SPEC_ATTR)
    current = spec.model_dump(mode="json")
    if saved is None:
        study.set_user_attr(SPEC_ATTR, current)
        study.set_user_attr("created", datetime.now(UTC).isoformat())
    else:
        check_same_study(saved, current, name)
        if saved != current:
            study.set_user_attr(SPEC_ATTR, current)  # e.g. a raised max_jobs: the latest settings rule
    if study.direction.name.lower() != direction:
        raise UserError(f"study {name!r} in {_redact(url)} was created to {study.direction.name.lower()}")
    return study


def check_same_study(saved: dict[str, Any], current: dict[str, Any], name: str) -> None:
    """Refuse to continue a study whose objective, ranges or strategy changed."""
    changed = [field for field in IDENTITY_FIELDS if saved.get(field) != current.get(field)]
    if changed:
        raise UserError(
            f"study {name!r} exists with different {', '.join(changed)}",
            hint="use a new --output (and --warm-start from the old tuning job), or restore the old settings",
        )


def load_worker_study(url: str, study_name: str, seed_offset: int) -> tuple[optuna.Study, TuneSpec]:
    """For `vizsla tune worker`: the study and the TuneSpec its creator saved in it."""
    import optuna

    from vizsla.tuning.tune_spec import TuneSpec

    storage = create_storage(url)
    try:
        summaries = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    except Exception as exc:  # noqa: BLE001 - a storage that cannot list is reported as such
        raise UserError(f"cannot read studies from {_redact(url)}: {exc}") from None
    if study_name not in summaries:
        known = ", ".join(sorted(summaries)) or "none"
        raise UserError(
            f"no study {study_name!r} in {_redact(url)} (studies there: {known})",
            hint="start the tuning job with `vizsla tune ... --storage URL` first",
        )
    probe = optuna.load_study(study_name=study_name, storage=storage)
    saved = probe.user_attrs.get(SPEC_ATTR)
    if saved is None:
        raise UserError(f"study {study_name!r} was not created by `vizsla tune` (no tuning spec in it)")
    spec = TuneSpec.model_validate(saved)
    seed = None if spec.random_seed is None else spec.random_seed + len(probe.trials) + seed_offset
    study = optuna.load_study(
        study_name=study_name,
        storage=storage,
        sampler=create_sampler(spec, seed),
        pruner=create_pruner(spec, training_epochs(spec)),
    )
    return study, spec


def _existing_trials(storage: optuna.storages.BaseStorage, name: str) -> int:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return 0
    return len(storage.get_all_trials(study_id, deepcopy=False))


def study_name_of(spec: TuneSpec) -> str:
    """The study's name: --study-name, else the tuning job's name, else its folder's name."""
    return spec.study_name or spec.name or Path(spec.output).name


def worker_name() -> str:
    """host:pid -- how trials record which worker runs them (stale-trial detection reads it back)."""
    return f"{os.uname().nodename}:{os.getpid()}"
