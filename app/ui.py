"""Streamlit pieces shared by the pages: the cached store, its problems, the selection, plain
text. Page bodies stay thin; their data functions live in the other modules of app/.
"""

import pathlib
import re

import streamlit as st

from app import state
from app.store import head_stamp, read_store, runs_dir_from_env, store_stamp
from diffsde.jobs import summaries

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|$~<>:])")
VIEWS = pathlib.Path(__file__).resolve().parent / "views"
STORE_TTL = 5.0  # seconds: a listing is re-read at least this often (a writer may have died)


def plain(text: object) -> str:
    """``text`` with every Markdown (and Streamlit ``:colour[]``/emoji) character escaped: run
    names, messages and paths that users or the store wrote are shown as they are, never as
    links, images or formatting."""
    return _MARKDOWN.sub(r"\\\1", str(text))


@st.cache_resource(show_spinner=False, max_entries=4, ttl=STORE_TTL)
def _store(runs_dir: str, stamp: tuple):
    """The store's runs and problems, read again when any file in it changes (`store_stamp`) and
    every `STORE_TTL` seconds (so a dead writer's run turns from running to killed/stale)."""
    del stamp
    return read_store(runs_dir)


def read_runs(runs_dir) -> tuple[list, list]:
    """``(records, problems)`` of the store, cached (see `_store`); `FileNotFoundError` if the
    store does not exist."""
    return _store(str(runs_dir), store_stamp(runs_dir))


@st.cache_resource(show_spinner=False, max_entries=4)
def _run_list(runs_dir: str, stamp: tuple):
    del stamp
    return summaries(runs_dir, read_store(runs_dir)[0])


def run_list(runs_dir) -> list:
    """Every run and job of the store as `diffsde.runs.RunSummary` (`diffsde.jobs.summaries`),
    read again only when a run or job is added, removed, renamed or changes state
    (`head_stamp`), not while a run merely trains: the Monitor polls this every 2 s."""
    return _run_list(str(runs_dir), head_stamp(runs_dir))


def title(text: str) -> pathlib.Path:
    """Title the page and name the run store; return the store's path."""
    runs_dir = runs_dir_from_env()
    st.title(text)
    st.caption(f"run store: `{runs_dir}`")
    return runs_dir


def no_runs(runs_dir) -> None:
    """What a page that needs runs says when the store has none."""
    st.info(f"no runs in {runs_dir}: start one with `diffsde run SPEC --runs-dir {runs_dir}`")


def run_store(text: str, *, require_runs: bool = True):
    """Title the page, name the run store, show what the listing skipped and return
    ``(runs_dir, records)``; stops the page with a clear message when the store does not exist
    or (with ``require_runs``) holds no run."""
    runs_dir = title(text)
    try:
        records, problems = read_runs(runs_dir)
    except FileNotFoundError as err:
        st.error(str(err))
        st.stop()
    for problem in problems:
        st.warning(plain(f"skipped {problem.path}: {problem.reason}"))
    if require_runs and not records:
        no_runs(runs_dir)
        st.stop()
    return runs_dir, records


def keep_selection(ids) -> None:
    """Make ``ids`` the selection: in the session (every page) and in the selection widget."""
    st.session_state[state.KEPT_SELECTION] = list(ids)
    st.session_state[state.SELECTION] = list(ids)


def seed_selection(valid) -> list[str]:
    """Call before drawing the selection widget (key `state.SELECTION`, not bound: a bound
    multiselect would put the runs' labels in the URL, and a label changes with a rename).

    The selection is the widget's, else the one kept in the session (back from another page),
    else the URL's (a refresh, a link: ``?runs=ID&runs=ID`` or the older ``?runs=ID,ID``); ids
    that are not runs of the store are dropped. Returns it; `show_selection` puts it in the URL.
    """
    valid = set(valid)
    if state.SELECTION in st.session_state:
        ids = st.session_state[state.SELECTION]
    elif state.KEPT_SELECTION in st.session_state:
        ids = st.session_state[state.KEPT_SELECTION]
    else:
        ids = [i for v in st.query_params.get_all(state.SELECTION) for i in v.split(",")]
    ids = [i for i in dict.fromkeys(ids) if i in valid]
    keep_selection(ids)
    return ids


def show_selection() -> None:
    """Write the current selection into the URL (``?runs=ID&runs=ID``)."""
    st.query_params[state.SELECTION] = list(st.session_state.get(state.SELECTION, []))
