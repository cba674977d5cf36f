"""Every key of the session state and of the URL that the pages share, in one place.

State that outlives a page lives in the URL (widgets bound to query parameters), so that a
refresh or a shared link restores it, and in the session, so that it follows the person from
page to page. Keys a single page uses alone are named here too, so that no two pages can
clash.
"""

# Shared between pages
SELECTION = "runs"  # the selected run ids: widget key and query parameter (?runs=ID&runs=ID)
KEPT_SELECTION = "compare_runs"  # the selection kept in the session across pages
MONITOR_RUN = "monitor_run"  # the run the Monitor watches; Runs' Monitor and Launch set it
CLONE = "new_run_clone"  # a run id Runs' Clone leaves: New run loads its spec once

# Runs
FILTER = "filter"  # also the query parameter
RUNS_TABLE = "runs_table"  # the data frame's key: this prefix and a digest of what it shows
RUNS_TABLE_NOW = "runs_table_now"  # the key of the table drawn last
RUNS_SHOWN = "runs_table_ids"  # the ids of the table's rows, in the order shown
RUNS_PENDING = "runs_pending_action"  # a rename or delete waiting for confirmation
RUNS_DONE = "runs_action_result"  # what the last confirmed one did, shown once

# New run
NEW_RUN_TEXT = "new_run_text"  # the editor's text: survives reruns and visits to other pages
NEW_RUN_VERSION = "new_run_text_version"  # bumped whenever the page (not the person) sets it
NEW_RUN_EDITOR = "new_run_editor"  # the editor component's state: what the person typed
NEW_RUN_SOURCE = "new_run_source"
NEW_RUN_LOADED = "new_run_loaded"  # where the editor's text was last loaded from
NEW_RUN_NOTES = "new_run_notes"  # what the last form change did beyond setting values
NEW_RUN_PROBLEM = "new_run_problem"  # why the last load failed
NEW_RUN_JOB = "new_run_job"  # the run directory of the last launch
NEW_RUN_FORM = "new_run_form."  # prefix of the form's widgets
FROM_RUN = "from"  # query parameter: /new_run?from=RUN_ID starts from that run's spec

# Monitor
MONITOR_PROBLEM = "monitor_problem"  # why the last Stop/Kill/Resume failed
