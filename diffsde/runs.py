"""Reading and writing runs: ``diffsde.runs.open_run(path)``, ``diffsde.runs.list_runs(dir)``;
``summarise(record)`` is the one summary of a run that every listing shows, and
``scan_store(dir)`` the one walk of a store's directories.

The format itself is documented in ``diffsde/_runs.py``.
"""

from ._runs import (
    CHECKPOINT_FILE as CHECKPOINT_FILE,
    CHECKPOINT_META_FILE as CHECKPOINT_META_FILE,
    MAX_COLUMNS as MAX_COLUMNS,
    RATE_WINDOW as RATE_WINDOW,
    RUN_FILE as RUN_FILE,
    STATES as STATES,
    STATUSES as STATUSES,
    CheckpointError as CheckpointError,
    LazyArrays as LazyArrays,
    Result as Result,
    RunBusyError as RunBusyError,
    RunProblem as RunProblem,
    RunReadError as RunReadError,
    RunRecord as RunRecord,
    RunSummary as RunSummary,
    RunWriter as RunWriter,
    StoreEntry as StoreEntry,
    add_results as add_results,
    check_name as check_name,
    delete_run as delete_run,
    environment as environment,
    format_table as format_table,
    is_run_dir as is_run_dir,
    list_runs as list_runs,
    load_checkpoint as load_checkpoint,
    mark_abandoned as mark_abandoned,
    new_run_dir as new_run_dir,
    open_run as open_run,
    rename_run as rename_run,
    run_is_live as run_is_live,
    run_state as run_state,
    save_checkpoint as save_checkpoint,
    scan_store as scan_store,
    summarise as summarise,
    summary_row as summary_row,
    writer_alive as writer_alive,
)
from ._runs_legacy import upgrade_runs as upgrade_runs
