"""Plugins: every registered component with its distribution, doc and parameters, and the
dashboard pages plugins add."""

import pandas as pd
import streamlit as st

from app.components import parameter_rows
from diffsde import get_registry

st.title("Plugins")
registry = get_registry()
for error in registry.errors:
    st.warning(f"plugin not loaded: {error}")

rows = registry.rows()
kinds = list(registry.components)
kind = st.selectbox("Kind", ["all", *kinds], key="plugins_kind")
shown = [r for r in rows if kind == "all" or r["kind"] == kind]
st.dataframe(pd.DataFrame(shown), hide_index=True, key="plugins_components")

for row in shown:
    component = registry.get(row["kind"], row["name"])
    with st.expander(f"{row['kind']} · {row['name']} ({row['distribution']})"):
        st.markdown(row["doc"] or "_no docstring_")
        parameters = parameter_rows(component.config)
        if parameters:
            st.table(pd.DataFrame(parameters))
        else:
            st.caption("no parameters")

st.header("Dashboard pages")
if registry.pages:
    pages = [
        {"page": p.title, "plugin": p.plugin, "distribution": p.distribution}
        for p in registry.pages
    ]
    st.dataframe(pd.DataFrame(pages), hide_index=True, key="plugins_pages")
    st.caption("Each is in the sidebar, after the built-in pages.")
else:
    st.caption("No plugin adds a dashboard page (hook `register_pages`).")
