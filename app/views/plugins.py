"""Plugins: every registered component with its distribution, doc and parameters."""

import pandas as pd
import streamlit as st

from app.data import component_rows, parameter_rows
from diffsde import get_registry

st.title("Plugins")
registry = get_registry()
for error in registry.errors:
    st.warning(f"plugin not loaded: {error}")

rows = component_rows(registry)
kinds = list(registry.components)
kind = st.selectbox("Kind", ["all", *kinds], key="plugins_kind")
shown = [r for r in rows if kind == "all" or r["kind"] == kind]
st.dataframe(pd.DataFrame(shown), hide_index=True)

for row in shown:
    component = registry.get(row["kind"], row["name"])
    with st.expander(f"{row['kind']} · {row['name']} ({row['distribution']})"):
        st.markdown(row["doc"] or "_no docstring_")
        parameters = parameter_rows(component.config)
        if parameters:
            st.table(pd.DataFrame(parameters))
        else:
            st.caption("no parameters")
