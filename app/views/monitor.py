"""Monitor: the queue, and one run's progress, curves, checkpoint and log, refreshed live.

Everything that changes while a run trains (the queue, the run list and its states, the run's
view) is drawn inside one fragment that re-runs every `REFRESH_SECONDS`; the charts keep their
keys and specs between refreshes, so only their data changes. Each refresh reads the watched
run alone (and the small queue and status files): the run list is read again only when a run
is added, removed or changes state (`app.ui.run_list`).
"""

import pathlib

import pandas as pd
import streamlit as st

from app import state
from app.compare import curves, series_names
from app.monitor import duration, entry_label, job_rows, log_tail, offered
from app.ui import plain, run_list, title
from diffsde import jobs
from diffsde.runs import RunReadError, open_run, summarise

REFRESH_SECONDS = 2.0
CHART_HEIGHT = 220
CHARTS_PER_ROW = 3

runs_dir = title("Monitor")
if not runs_dir.is_dir():
    st.info(f"runs directory {runs_dir} does not exist yet: launch a run on the New run page")
    st.stop()
jobs.ensure_worker(runs_dir)  # restarts the queue if its worker is gone (e.g. after a reboot)


def _act(path: str, action: str) -> None:
    """Stop, Kill or Resume ``path``; what happened (or why not) is shown as a toast."""
    name = pathlib.Path(path).name
    try:
        if action == "resume":
            job = jobs.resume(path)
            st.toast(plain(f"{name}: resume queued as job {job.id}"))
        else:
            st.toast(plain(f"{name}: {jobs.stop(path, kill=action == 'kill')}"))
    except (RunReadError, ValueError, OSError) as err:
        st.session_state[state.MONITOR_PROBLEM] = f"could not {action} {name}: {err}"


def _chart_spec(series: str, log: bool) -> dict:
    """One live curve's Vega-Lite spec, without its data: the same dict every refresh, so the
    chart keeps its view and only swaps the rows (no blank frame, no flicker). Altair would
    name the data after its hash, making every refresh a new spec."""
    scale = {"type": "log"} if log else {"zero": False}
    return {
        "title": series,
        "height": CHART_HEIGHT,
        "mark": {"type": "line"},
        "encoding": {
            "x": {"field": "step", "type": "quantitative", "title": "step"},
            "y": {"field": "value", "type": "quantitative", "title": series, "scale": scale},
        },
    }


def _run_view(entry) -> None:
    path = str(entry.path)
    buttons = st.columns([1, 1, 1, 3])
    if entry.live:
        stop_label = "Cancel" if entry.state == "queued" else "Stop"
        buttons[0].button(stop_label, key="monitor_stop", on_click=_act, args=(path, "stop"))
        if entry.state != "queued":
            buttons[1].button(
                "Kill",
                key="monitor_kill",
                on_click=_act,
                args=(path, "kill"),
                help="SIGKILL the process group; the rows written so far are kept.",
            )
    elif entry.resumable:
        buttons[0].button(
            "Resume",
            key="monitor_resume",
            type="primary",
            on_click=_act,
            args=(path, "resume"),
            help="Queue `diffsde run --resume` for this run: it goes on from its last "
            "checkpoint (from step 0 if it has none).",
        )
    if (problem := st.session_state.pop(state.MONITOR_PROBLEM, None)) is not None:
        st.error(plain(problem))
    if entry.record is None:
        st.info(f"{entry.state}: the run has not written anything yet")
    else:
        _progress(entry)
    tail = log_tail(entry.path)
    if tail is not None:
        st.caption(f"log tail ({jobs.LOG_FILE})")
        st.code(tail or "(empty)", language=None)


def _progress(run) -> None:
    """The run's progress, rate, ETA, checkpoint and one chart per logged series."""
    st.progress(run.fraction, text=f"{run.state}: step {run.step} of {run.steps}")
    if run.message:
        st.caption(plain(run.message))
    columns = st.columns(5)
    columns[0].metric("loss", f"{run.loss:.4g}" if run.loss is not None else "–")
    columns[1].metric("steps/s", f"{run.rate:.1f}" if run.rate is not None else "?")
    columns[2].metric("elapsed", duration(run.elapsed))
    columns[3].metric("ETA", duration(run.eta) if run.state == "running" else "–")
    checkpoint = run.checkpoint_step
    columns[4].metric("last checkpoint", f"step {checkpoint}" if checkpoint else "none")
    for entry in run.lineage:  # where the run started from (it keeps its own copy of each)
        st.caption(
            plain(
                f"{entry['role']} ← {entry['id']} ({entry['checkpoint']} checkpoint at step "
                f"{entry['step']}; the run reads its own copy, lineage/{entry['role']}/)"
            )
        )
    names = series_names([run])  # loss, lr, grad_norm, then a training method's own
    frame = curves([run], names)
    for first in range(0, len(names), CHARTS_PER_ROW):
        row = names[first : first + CHARTS_PER_ROW]
        for column, series in zip(st.columns(CHARTS_PER_ROW), row, strict=False):
            _chart(column, series, frame.loc[frame["series"] == series, ["step", "value"]])


def _chart(column, series: str, data) -> None:
    """One series' chart: log y when every value allows it (loss, gradient norm), but lr."""
    log = series != "lr" and bool(len(data)) and bool((data["value"] > 0).all())
    column.vega_lite_chart(data, _chart_spec(series, log), width="stretch", key=f"monitor_{series}")


def _watched(entry):
    """The watched run read now (the run list may be older): its progress, state and curves."""
    if entry.record is None:
        return entry
    try:
        fresh = summarise(open_run(entry.path))
    except RunReadError:
        return entry
    # a run queued to resume stays queued until its process writes `running`
    return fresh if not (entry.state == "queued" and fresh.state != "running") else entry


@st.fragment(run_every=REFRESH_SECONDS)
def live() -> None:
    """Re-run every few seconds by itself: the queue, the run list and the chosen run."""
    queue = job_rows(runs_dir)
    if queue:
        st.subheader("Queue")
        st.dataframe(pd.DataFrame(queue), hide_index=True, key="monitor_queue")
    shown = offered(run_list(runs_dir), keep=st.session_state.get(state.MONITOR_RUN))
    if not shown:
        st.info("nothing to monitor yet: launch a run on the New run page")
        return
    by_path = {str(e.path): e for e in shown}
    if st.session_state.get(state.MONITOR_RUN) not in by_path:
        st.session_state[state.MONITOR_RUN] = str(shown[0].path)
    chosen = st.selectbox(
        "Run",
        options=list(by_path),
        format_func=lambda p: entry_label(by_path[p]) if p in by_path else p,
        key=state.MONITOR_RUN,
        persist_state="session",
        help="Live runs and queued jobs first, then the latest finished runs.",
    )
    _run_view(_watched(by_path[chosen]))


live()
