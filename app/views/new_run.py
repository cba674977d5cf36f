"""New run: edit a spec (from a shipped example or an earlier run) in a monospace editor with line
numbers, validated as the CLI does while it is typed; set the common fields in a form; launch it
in the background (the Launch button and the verdict sit above the editor)."""

import streamlit as st

from app import state
from app.code_editor import code_editor
from app.form import apply_form, form_fields, form_values, spec_schema
from app.store import run_spec, shipped_specs
from app.ui import VIEWS, plain, read_runs, title
from app.validation import EDITOR_FILE, annotate, validate
from diffsde import SpecError
from diffsde.jobs import list_jobs, read_job, submit
from diffsde.runs import RunReadError, open_run

DEFAULT_SPEC = "vp_8gaussians"  # the spec of `make demo`: a sensible first thing to edit


@st.cache_data(show_spinner="validating…", max_entries=32)
def _validate(text: str):
    """Validation builds the SDE and traces it: cached on the text, so reruns are free."""
    return validate(text)


@st.cache_resource
def _fields():
    """The form fields: the schema depends on the registry only, fixed for the session."""
    return form_fields(spec_schema())


def _reset_form() -> None:
    """Drop the form widgets' state so they are re-created from the editor text."""
    for key in [k for k in st.session_state if str(k).startswith(state.NEW_RUN_FORM)]:
        del st.session_state[key]


def _edited() -> None:
    """The person typed in the editor: the form follows the text, old notes no longer apply."""
    typed = st.session_state[state.NEW_RUN_EDITOR]["text"]
    if typed is None or typed == st.session_state.get(state.NEW_RUN_TEXT):
        return
    st.session_state[state.NEW_RUN_TEXT] = typed
    st.session_state[state.NEW_RUN_NOTES] = []
    _reset_form()


def _issues(lines: list[str]) -> None:
    """The CLI's lines, verbatim in a code block (messages hold `*`, `_` and backticks that
    Markdown would eat)."""
    count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
    st.error(f"{count} in the spec, as `diffsde validate` reports them; fix them to launch:")
    st.code("\n".join(lines), language=None, wrap_lines=True)


def _set_text(text: str, loaded: str, notes: list[str] | None = None) -> None:
    st.session_state[state.NEW_RUN_TEXT] = text
    st.session_state[state.NEW_RUN_VERSION] = st.session_state.get(state.NEW_RUN_VERSION, 0) + 1
    st.session_state[state.NEW_RUN_LOADED] = loaded
    st.session_state[state.NEW_RUN_NOTES] = notes or []
    st.session_state.pop(state.NEW_RUN_PROBLEM, None)
    _reset_form()


def _label(source: str) -> str:
    kind, _, name = source.partition(":")
    return f"shipped spec {name}" if kind == "spec" else f"run {name}"


def _source_text(source: str) -> str:
    kind, _, name = source.partition(":")
    if kind == "run":
        return run_spec(runs_dir, name)
    if name not in specs:
        raise ValueError(f"there is no shipped spec {name!r} in specs/")
    return specs[name].read_text()


def _load() -> None:
    source = st.session_state[state.NEW_RUN_SOURCE]
    try:
        _set_text(_source_text(source), source)
    except (ValueError, OSError, RunReadError) as err:
        st.session_state[state.NEW_RUN_PROBLEM] = f"could not load {_label(source)}: {err}"


def _apply_form() -> None:
    values = {f.key: st.session_state.get(state.NEW_RUN_FORM + f.key) for f in fields}
    try:
        text, notes = apply_form(st.session_state[state.NEW_RUN_TEXT], fields, values)
    except ValueError as err:
        st.session_state[state.NEW_RUN_PROBLEM] = str(err)
        return
    _set_text(text, st.session_state.get(state.NEW_RUN_LOADED, ""), notes)


def _launch(text: str) -> None:
    try:
        job = submit(text, runs_dir, source=EDITOR_FILE)
    except SpecError as err:  # the spec changed under us, or the validators disagree
        _issues([str(issue) for issue in err.issues])
    except OSError as err:
        st.error(plain(f"could not create the run in {runs_dir}: {err}"))
    else:
        st.session_state[state.NEW_RUN_JOB] = str(job.path)
        st.session_state[state.MONITOR_RUN] = str(job.path)  # the Monitor page opens on it


def _launched(path: str) -> None:
    try:
        job = read_job(path)
    except RunReadError as err:
        st.warning(plain(f"the launched run is gone: {err}"))
        return
    state = job.state
    try:
        state = f"{job.state} (run {open_run(job.path).status})"
    except RunReadError:
        pass  # not created yet, or being created: the job state alone says enough
    st.success(
        f"launched **{plain(job.name)}** as `{job.id}`: {state}.  \n"
        f"run directory `{job.path}`, its output in `{job.log}`."
    )
    monitor, refresh = st.columns([3, 1])
    monitor.page_link(st.Page(VIEWS / "monitor.py", title="Monitor"), label="Follow it on Monitor")
    refresh.button("Refresh", key="new_run_refresh")


runs_dir = title("New run")
specs = shipped_specs()
try:
    runs = [record.id for record in read_runs(runs_dir)[0]]  # cached: this reruns as one types
except FileNotFoundError:
    runs = []  # a first run creates the store
fields = _fields()

sources = [f"spec:{name}" for name in specs] + [f"run:{run}" for run in reversed(runs)]
clone = st.session_state.pop(state.CLONE, None)
if state.NEW_RUN_TEXT not in st.session_state or clone is not None:
    wanted = clone or st.query_params.get(state.FROM_RUN)
    first = f"run:{wanted}" if wanted else f"spec:{DEFAULT_SPEC}"
    if first not in sources and not wanted:
        first = sources[0] if sources else ""
    try:
        _set_text(_source_text(first) if first else "", first)
    except (ValueError, OSError, RunReadError) as err:
        _set_text("", "")
        st.session_state[state.NEW_RUN_PROBLEM] = f"could not start from {_label(first)}: {err}"
    if first in sources:
        st.session_state[state.NEW_RUN_SOURCE] = first

pick, load = st.columns([4, 1], vertical_alignment="bottom")
pick.selectbox(
    "Start from",
    sources,
    key=state.NEW_RUN_SOURCE,
    format_func=_label,
    help="A shipped example from specs/, or the resolved spec stored with an earlier run.",
)
load.button("Load into editor", on_click=_load, disabled=not sources)
if state.NEW_RUN_PROBLEM in st.session_state:
    st.error(st.session_state[state.NEW_RUN_PROBLEM])
if st.session_state.get(state.NEW_RUN_LOADED):
    st.caption(f"editor loaded from {_label(st.session_state[state.NEW_RUN_LOADED])}")

text = st.session_state[state.NEW_RUN_TEXT]
try:
    validation = _validate(text)
    failure = None
except Exception as err:  # a validator bug must not take the page down
    validation, failure = None, f"the validator failed on this text ({type(err).__name__}: {err})"
ok = validation is not None and validation.ok

# The verdict and Launch first, above the editor: both visible without scrolling.
verdict, launch = st.columns([5, 1], vertical_alignment="center")
with verdict:
    if failure is not None:
        st.error(failure)
    elif ok:
        st.success(f"✓ valid: {validation.summary}")
    else:
        count = len(validation.issues)
        st.error(
            f"✗ {count} problem{'s' if count != 1 else ''}: fix {'them' if count != 1 else 'it'} "
            "to launch (listed below the editor)"
        )
launch_clicked = launch.button(
    "Launch", type="primary", disabled=not ok, key="new_run_launch", width="stretch"
)
active = [j for j in list_jobs(runs_dir) if j.state in ("queued", "running")]
if active:
    st.caption(
        f"{len(active)} run(s) queued or running in this store; a new one waits in the queue "
        "until the CPUs are free."
    )
if launch_clicked:
    _launch(text)
if state.NEW_RUN_JOB in st.session_state:
    _launched(st.session_state[state.NEW_RUN_JOB])

left, right = st.columns([3, 2])
with left:
    st.markdown("**Spec (YAML)** — checked as you type, as `diffsde validate` would")
    code_editor(
        text,
        version=st.session_state[state.NEW_RUN_VERSION],
        key=state.NEW_RUN_EDITOR,
        on_change=_edited,
    )
    for note in st.session_state.get(state.NEW_RUN_NOTES, []):
        st.info(note)
    if validation is not None and not validation.ok:
        _issues(validation.lines())
        annotated = annotate(text, validation.issues, file=EDITOR_FILE)
        if annotated:
            st.code(annotated, language=None, wrap_lines=True)
with right:
    try:
        shown = form_values(text, fields)
    except ValueError as err:
        st.info(f"the form needs a YAML mapping in the editor: {err}")
    else:
        with st.form("new_run_form"):
            st.markdown("**Common fields** (the rest are in the editor)")
            for field in fields:
                key, value = state.NEW_RUN_FORM + field.key, shown[field.key]
                label = f"{field.title} (`{field.key}`)"
                hint = field.description.split("\n\n")[0] or None
                if field.bounds_text():
                    hint = f"{hint or ''} Must be {field.bounds_text()}.".strip()
                if field.kind == "choice":
                    options = list(field.choices)
                    st.selectbox(
                        label,
                        options,
                        index=options.index(value) if value in options else None,
                        key=key,
                        help=hint,
                        format_func=lambda c, f=field: (
                            f"{c} — {f.choice_descriptions[c].splitlines()[0]}"
                            if f.choice_descriptions.get(c)
                            else c
                        ),
                        placeholder=f"{value} (not a registered type)" if value else "not set",
                    )
                elif field.kind in ("integer", "number"):
                    low, high = field.widget_bounds()
                    integer = field.kind == "integer"
                    st.number_input(
                        label,
                        value=int(value) if integer else float(value),
                        min_value=low,
                        max_value=high,
                        step=1 if integer else None,
                        format=None if integer else "%g",
                        key=key,
                        help=hint,
                    )
                else:
                    st.text_input(label, value=value or "", key=key, help=hint)
            st.form_submit_button("Apply to the YAML", on_click=_apply_form)
            st.caption(
                "Changing a section's type replaces that section with just `{type: …}`: the old "
                "type's parameters may not apply to the new one."
            )
