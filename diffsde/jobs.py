"""Runs in the background, as the dashboard launches them: ``diffsde.jobs.submit(text, dir)``.

How jobs, the queue and stopping work is documented in ``diffsde/_jobs.py``.
"""

from ._jobs import (
    LOG_FILE as LOG_FILE,
    SPEC_FILE as SPEC_FILE,
    Job as Job,
    default_slots as default_slots,
    discard as discard,
    ensure_worker as ensure_worker,
    job_summary as job_summary,
    list_jobs as list_jobs,
    read_job as read_job,
    resume as resume,
    stop as stop,
    submit as submit,
    summaries as summaries,
    worker_running as worker_running,
)
