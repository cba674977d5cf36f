"""The spec language: read and validate a YAML spec into the objects it declares.

``load_spec(path)`` / ``validate_text(text)`` return a :class:`Setup` (the validated spec
model, its SDE, prior and dataset) or raise :class:`SpecError`, whose :class:`SpecIssue` items
each name a file:line:column, the dotted key and the fix. ``spec_model(registry)`` is the
pydantic model of a spec for the registered components, ``json_schema()`` its JSON Schema.
``optimizer(training)`` and ``build_method(spec, model, objective, sde=, data=, prior=)`` build
the core's training objects from a spec's ``training:`` and ``method:`` sections
(``score_matching(training, objective, model)`` is the default method's).

The implementation lives in ``diffsde/_spec/``.
"""

from ._run import require_runnable as require_runnable
from ._spec._model import (
    SpecBase as SpecBase,
    TrainingConfig as TrainingConfig,
    spec_model as spec_model,
)
from ._spec._optim import (
    build_method as build_method,
    method_requires as method_requires,
    optimizer as optimizer,
    score_matching as score_matching,
)
from ._spec._schema import json_schema as json_schema
from ._spec._source import (
    Location as Location,
    SourceError as SourceError,
    load_yaml as load_yaml,
)
from ._spec._validate import (
    Setup as Setup,
    SpecError as SpecError,
    SpecIssue as SpecIssue,
    compatible_objectives as compatible_objectives,
    dump_resolved as dump_resolved,
    load_spec as load_spec,
    validate_text as validate_text,
)
