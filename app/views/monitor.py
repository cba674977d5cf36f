"""Monitor: the queue, and one run's progress, curves, checkpoint and log, refreshed live."""

import pathlib

import altair as alt
import pandas as pd
import streamlit as st

from app.monitor import (
    duration,
    entries,
    job_rows,
    last_checkpoint,
    live_curves,
    log_tail,
    progress,
)
from app.ui import run_store
from diffsde import jobs
from diffsde.runs import RUN_FILE, RunReadError, open_run

REFRESH_SECONDS = 2.0
SELECTED_KEY = "monitor_run"  # kept across pages: the run being watched


@st.cache_data(show_spinner=False, max_entries=64)
def _record(path: str, mtime: float):
    """One run, cached on (path, mtime): re-read only when its file changes."""
    del mtime
    return open_run(path)


def _read(path: pathlib.Path):
    return _record(str(path), (path / RUN_FILE).stat().st_mtime)


runs_dir, _ = run_store("Monitor")
jobs.ensure_worker(runs_dir)  # restarts the queue if its worker is gone (e.g. after a reboot)

queue = job_rows(runs_dir)
if queue:
    st.subheader("Queue")
    st.dataframe(pd.DataFrame(queue), hide_index=True)

shown = entries(runs_dir, read=_read)
if not shown:
    st.info("nothing to monitor yet: launch a run on the New run page")
    st.stop()
by_path = {str(e.path): e for e in shown}
if st.session_state.get(SELECTED_KEY) not in by_path:
    st.session_state[SELECTED_KEY] = str(shown[0].path)
chosen = st.selectbox(
    "Run",
    options=list(by_path),
    format_func=lambda p: by_path[p].label,
    key=SELECTED_KEY,
    help="Live runs and queued jobs first, then the latest finished runs.",
)


def _stop(path: str, kill: bool) -> None:
    try:
        st.toast(f"{pathlib.Path(path).name}: {jobs.stop(path, kill=kill)}")
    except (RunReadError, OSError) as err:
        st.error(f"could not stop {path}: {err}")


@st.fragment(run_every=REFRESH_SECONDS)
def live(path: str) -> None:
    """Re-run every few seconds by itself; the rest of the page (the selection) is untouched."""
    run_dir = pathlib.Path(path)
    entry = next((e for e in entries(runs_dir, read=_read) if str(e.path) == path), None)
    if entry is None:
        st.warning(f"{path} is gone")
        return
    if entry.live:
        left, right, _ = st.columns([1, 1, 4])
        stop_label = "Cancel" if entry.state == "queued" else "Stop"
        left.button(stop_label, key="monitor_stop", on_click=_stop, args=(path, False))
        if entry.state != "queued":
            right.button(
                "Kill",
                key="monitor_kill",
                on_click=_stop,
                args=(path, True),
                help="SIGKILL the process group; the run is still marked `stopped`, rows kept.",
            )
    if not (run_dir / RUN_FILE).is_file():
        st.info(f"{entry.state}: no run.h5 yet")
    else:
        record = _read(run_dir)
        done = progress(record)
        st.progress(done.fraction, text=f"{record.status}: step {done.step} of {done.total}")
        if record.message:
            st.caption(record.message)
        columns = st.columns(5)
        loss = record.metrics.get("loss")
        columns[0].metric("loss", f"{loss[-1]:.4g}" if loss is not None and len(loss) else "–")
        rate = f"{done.rate:.1f}" if done.rate is not None else "?"
        columns[1].metric("steps/s", rate)
        columns[2].metric("elapsed", duration(done.elapsed))
        eta = duration(done.eta) if record.status == "running" else "–"
        columns[3].metric("ETA", eta)
        checkpoint = last_checkpoint(run_dir)
        columns[4].metric(
            "last checkpoint",
            f"step {checkpoint[0]}" if checkpoint else "none",
            help=f"written {checkpoint[1]:%H:%M:%S}" if checkpoint else None,
        )
        frame = live_curves(record)
        if not frame.empty:
            charts = st.columns(3)
            for column, series in zip(charts, ("loss", "lr", "grad_norm"), strict=True):
                data = frame[frame["series"] == series]
                scale = alt.Scale(type="log") if series != "lr" else alt.Scale()
                column.altair_chart(
                    alt.Chart(data, title=series)
                    .mark_line()
                    .encode(x="step:Q", y=alt.Y("value:Q", title=series, scale=scale))
                    .properties(height=220),
                    width="stretch",
                )
    tail = log_tail(run_dir)
    if tail is not None:
        st.caption(f"log tail ({jobs.LOG_FILE})")
        st.code(tail or "(empty)", language=None)


live(chosen)
