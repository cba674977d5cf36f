"""Streamlit pieces shared by the pages (page bodies stay thin; data functions live in data.py).

State that outlives a page lives in two places: the URL (widgets bound to query parameters:
``runs``, ``filter``, ``metric``, ``smoothing``), so that a refresh or a shared link restores
it, and the session (`KEPT_KEY`), so that it follows the person from page to page.
"""

import re

import streamlit as st

from app.data import read_store, runs_dir_from_env, store_stamp

SELECTION_KEY = "runs"  # the selected run ids: widget key and query parameter (?runs=ID&runs=ID)
KEPT_KEY = "compare_runs"  # the selection kept in the session across pages
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|$~<>:])")


def plain(text: object) -> str:
    """``text`` with every Markdown (and Streamlit ``:colour[]``/emoji) character escaped: run
    names, messages and paths that users or the store wrote are shown as they are, never as
    links, images or formatting."""
    return _MARKDOWN.sub(r"\\\1", str(text))


STORE_TTL = 5.0  # seconds: a listing is re-read at least this often (a writer may have died)


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


def run_store(title: str):
    """Title the page, name the run store, and return ``(runs_dir, records, problems)``; stops
    the page with a clear message when the store does not exist."""
    runs_dir = runs_dir_from_env()
    st.title(title)
    st.caption(f"run store: `{runs_dir}`")
    try:
        records, problems = read_runs(runs_dir)
    except FileNotFoundError as err:
        st.error(str(err))
        st.stop()
    return runs_dir, records, problems


def keep_selection(ids) -> None:
    """Make ``ids`` the selection: in the session (every page) and in the selection widget."""
    st.session_state[KEPT_KEY] = list(ids)
    st.session_state[SELECTION_KEY] = list(ids)


def seed_selection(valid) -> list[str]:
    """Call before drawing the selection widget (key `SELECTION_KEY`, not bound: a bound
    multiselect would put the runs' labels in the URL, and a label changes with a rename).

    The selection is the widget's, else the one kept in the session (back from another page),
    else the URL's (a refresh, a link: ``?runs=ID&runs=ID`` or the older ``?runs=ID,ID``); ids
    that are not runs of the store are dropped. Returns it; `show_selection` puts it in the URL.
    """
    valid = set(valid)
    if SELECTION_KEY in st.session_state:
        ids = st.session_state[SELECTION_KEY]
    elif KEPT_KEY in st.session_state:
        ids = st.session_state[KEPT_KEY]
    else:
        ids = [i for v in st.query_params.get_all(SELECTION_KEY) for i in v.split(",")]
    ids = [i for i in dict.fromkeys(ids) if i in valid]
    keep_selection(ids)
    return ids


def show_selection() -> None:
    """Write the current selection into the URL (``?runs=ID&runs=ID``)."""
    st.query_params[SELECTION_KEY] = list(st.session_state.get(SELECTION_KEY, []))
