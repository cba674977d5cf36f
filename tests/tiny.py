"""The tiny spec that run-store, job, likelihood and dashboard tests train (seconds each)."""


def tiny_spec(
    name: str = "tiny",
    *,
    sde: str = "vp",
    steps: int | str = 20,
    checkpoint_every: int = 10,
    n_samples: int = 100,
    metrics: str = "[{type: sliced_w2}]",
    extra_eval: str = "",
) -> str:
    """A 2-D two-component mixture, a 16-wide MLP, DSM, ``steps`` steps of 10 per dispatch and a
    10-step Euler PF-ODE. The model section is line 5 (tests point at its columns)."""
    return f"""\
name: {name}
seed: 3
sde: {{type: {sde}}}
data: {{type: gmm, dim: 2, components: 2, std: 0.3}}
model: {{type: mlp, width: 16, depth: 1, n_frequencies: 4}}
objective: {{type: dsm}}
training:
  steps: {steps}
  batch_size: 32
  steps_per_dispatch: 10
  checkpoint_every: {checkpoint_every}
  warmup_steps: 5
sampler: {{type: pf_ode, solver: euler, steps: 10}}
eval:
  n_samples: {n_samples}
  metrics: {metrics}
{extra_eval}"""
