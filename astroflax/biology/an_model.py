"""The bidirectionally coupled astrocyte–neuron (AN) model as one ``lax.scan`` over time.

Wade et al., PLoS ONE 2011 and Front. Comput. Neurosci. 2012 (their Eqs. 1-15), in the form of
the authors' lab's MATLAB (docs/model.md §6). Per step of length dt, in this order (the lab's
order, so that at dt = 1 ms the update is exactly the lab's forward-Euler scheme):

1. PR = clip(PR(0) (1 + (DSE + eSP) / 100), 0, 1) per neuron, DSE = K_AG * AG   (Eq. 15)
2. each synapse releases with probability r*dt*PR (a Poisson spike, probability r*dt, times an
   independent release, probability PR: one uniform draw decides both)
3. LIF: v += -v dt/tau_mem + n_releases * R_m I_inj (1 ms)/tau_mem; clamp v = 0 while refractory;
   v >= v_th fires and starts the refractory period                              (Eq. 1)
4. AG += -AG dt/tau_AG + r_AG (1 ms) if the neuron fired on the previous step     (Eq. 5)
5. IP3 += ((IP3* - IP3)/tau_IP3 + r_IP3 sum_neurons AG) dt                        (Eq. 7)
6. (Ca, h): Li–Rinzel forward Euler at the old IP3                               (Eqs. 8-13)
7. glutamate pulse r_Glu (1 ms) if the new Ca is at or above threshold and no release happened in
   the last 300 ms (see ``ANParams.glu_release`` for the lab's latched variant)    (Eq. 14)
8. eSP += (-eSP + m_eSP Glu) dt/tau_eSP, with the old Glu                         (Eq. 15)

Discretisation (docs/model.md §6): events are pulses of a fixed 1 ms (``event_duration``), so
their effect does not scale with dt, and Poisson spikes have probability r*dt per step;
halving dt converges.

Precision. The state is float32 by default, chosen deliberately and measured: at 5 Hz, float32
and float64 runs with the same random draws give 300-s mean Ca2+ that agree to 3e-6 (relative).
float32's known limit here is stagnation of the slow variables: ``x += (x_inf - x) dt/tau``
stops moving once the increment is below half an ulp, i.e. anywhere within
``|x - x_inf| < ulp(x) tau / (2 dt)`` -- for the gate h at rest (tau_h ~ 12 s) 6e-4 relative,
which shows in the deterministic resting Ca2+ (5e-4 high), for eSP (tau = 40 s) 0.2%. Under
synaptic drive the state is kicked every few ms, the rounding errors are unbiased and average
out (hence the 3e-6). Long *sums* would lose precision, so time averages are accumulated per
recording block (default 1 s) and the blocks are averaged in float64 by the caller. Pass
``dtype=jnp.float64`` (with ``jax_enable_x64``) for reference runs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from astroflax.biology import li_rinzel
from astroflax.biology.params import ANParams


class ANState(NamedTuple):
    """State of one AN model instance. ``N`` = ``n_neurons``."""

    v: jax.Array        # [N] membrane potential, mV
    refrac: jax.Array   # [N] int32, steps left with the membrane clamped at 0
    spiked: jax.Array   # [N] bool, fired on the previous step
    ag: jax.Array       # [N] 2-AG, uM
    ip3: jax.Array      # [] IP3, uM
    ca: jax.Array       # [] cytosolic Ca2+, uM
    h: jax.Array        # [] IP3R inactivation gate
    glu: jax.Array      # [] astrocytic glutamate, uM
    esp: jax.Array      # [] eSP, percent of PR(0)
    since_glu: jax.Array  # [] int32, steps since the last glutamate release (saturating)
    crossed: jax.Array  # [] bool, Ca has reached the threshold at least once
    released: jax.Array  # [] bool, glutamate was released on the last step


class ANTrace(NamedTuple):
    """Block averages of a simulation; every field is ``[..., n_blocks]`` float32.

    Block ``b`` covers simulated time ``[b, b + 1) * record_every_s``.
    """

    ca: jax.Array          # mean cytosolic Ca2+, uM
    ip3: jax.Array         # mean IP3, uM
    pr: jax.Array          # mean release probability over neurons (and so synapses)
    esp: jax.Array         # mean eSP
    post_rate_hz: jax.Array  # postsynaptic firing rate per neuron, Hz
    glu_rate_hz: jax.Array   # glutamate releases per second


def initial_state(p: ANParams, dtype: jnp.dtype = jnp.float32) -> ANState:
    """The lab's initial condition: everything at rest, Ca, h, IP3 from ``p``.

    Args:
        p: model parameters.
        dtype: float dtype of the continuous state.

    Returns:
        The state; vector fields have shape ``[p.n_neurons]``.
    """
    n = p.n_neurons
    zeros = jnp.zeros((n,), dtype)
    scalar = functools.partial(jnp.asarray, dtype=dtype)
    return ANState(
        v=zeros, refrac=jnp.zeros((n,), jnp.int32), spiked=jnp.zeros((n,), bool), ag=zeros,
        ip3=scalar(p.ip3_init_um), ca=scalar(p.ca_init_um), h=scalar(p.h_init),
        glu=scalar(0.0), esp=scalar(0.0),
        # Saturated: in "threshold" mode the first crossing may release at once.
        since_glu=jnp.asarray(_glu_refractory_steps(p) + 1, jnp.int32),
        crossed=jnp.asarray(False), released=jnp.asarray(False),
    )


def _glu_refractory_steps(p: ANParams) -> int:
    return p.steps(p.glu_refractory_s)


def step(state: ANState, u: jax.Array, rate_dt: jax.Array, p: ANParams) -> ANState:
    """Advances the AN model by one step of ``p.dt``.

    Args:
        state: the state at time t.
        u: ``[n_neurons, synapses_per_neuron]`` uniforms in [0, 1) for this step.
        rate_dt: presynaptic rate times dt (spike probability per step), scalar, state dtype.
        p: model parameters.

    Returns:
        The state at time t + dt.
    """
    dtype = state.ca.dtype
    dt = p.dt
    # 1-2: release probability, then releases (Wade et al. 2012, Eq. 15; docs/model.md §6).
    dse = p.k_ag * state.ag
    pr = jnp.clip(p.pr0 * (1.0 + (dse + state.esp) / 100.0), 0.0, 1.0)
    n_rel = jnp.sum(u < (rate_dt * pr)[:, None], axis=-1).astype(dtype)
    # 3: LIF with a fixed-duration current pulse per release.
    jump = p.r_m_gohm * p.i_inj_pa * p.event_duration / p.tau_mem_s
    clamped = state.refrac > 0
    v = jnp.where(clamped, jnp.zeros_like(state.v),
                  state.v - state.v * (dt / p.tau_mem_s) + jump * n_rel)
    fired = ~clamped & (v >= p.v_th_mv)
    refrac = jnp.where(fired, p.steps(p.t_refrac_s), jnp.maximum(state.refrac - 1, 0))
    # 4-5: 2-AG (pulse from the spike flagged on the previous step, as the lab's t == t_sp) and IP3.
    ag = (state.ag - state.ag * (dt / p.tau_ag_s)
          + (p.r_ag_um_per_s * p.event_duration) * state.spiked.astype(dtype))
    ip3 = state.ip3 + ((p.ip3_star_um - state.ip3) / p.tau_ip3_s
                       + p.r_ip3_per_s * jnp.sum(state.ag)) * dt
    # 6: Li-Rinzel at the old IP3 (explicit Euler throughout, as the lab).
    ca, h = li_rinzel.euler_step(state.ca, state.h, state.ip3, p, dt)
    # 7: threshold-triggered glutamate, tested on the new Ca as in the lab.
    above = ca >= p.ca_threshold_um
    n_ref = _glu_refractory_steps(p)
    since = jnp.minimum(state.since_glu + 1, n_ref + 1)
    crossed = state.crossed | above
    if p.glu_release == "latched":
        # The lab's clock starts at the first crossing, without a release.
        since = jnp.where(above & ~state.crossed, 0, since)
        release = crossed & (since > n_ref)
    else:
        release = above & (since > n_ref)
    since = jnp.where(release, 0, since)
    glu = (state.glu - state.glu * (dt / p.tau_glu_s)
           + (p.r_glu_um_per_s * p.event_duration) * release.astype(dtype))
    # 8: eSP from the old glutamate.
    esp = state.esp + (p.m_esp * state.glu - state.esp) * (dt / p.tau_esp_s)
    return ANState(v=v, refrac=refrac, spiked=fired, ag=ag, ip3=ip3, ca=ca, h=h, glu=glu,
                   esp=esp, since_glu=since, crossed=crossed, released=release)


def _check_times(p: ANParams, duration_s: float, record_every_s: float) -> tuple[int, int]:
    steps_per_block = p.steps(record_every_s)
    n_blocks = round(duration_s / record_every_s)
    if record_every_s <= 0 or steps_per_block < 1:
        raise ValueError(f"record_every_s must be >= dt ({p.dt}), got {record_every_s!r}")
    if duration_s <= 0 or abs(n_blocks * record_every_s - duration_s) > 1e-9 * duration_s:
        raise ValueError(
            f"duration_s must be a positive multiple of record_every_s ({record_every_s}),"
            f" got {duration_s!r}"
        )
    return n_blocks, steps_per_block


def check_rates(rates: np.ndarray | jax.Array | float, p: ANParams) -> None:
    """Rejects negative, non-finite, or too high rates (r*dt must be a probability).

    Args:
        rates: presynaptic rates, Hz, any shape (concrete values, not traced).
        p: model parameters.

    Raises:
        ValueError: naming ``rates``.
    """
    r = np.asarray(rates, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"rates must be finite and >= 0 Hz, got {r.tolist()!r}")
    if np.any(r * p.dt > 1.0):
        raise ValueError(f"rates * dt must be <= 1 (dt = {p.dt} s), got max rate {r.max()!r} Hz")


def draw_uniforms(key: jax.Array, block: jax.Array | int, shape: tuple[int, ...]) -> jax.Array:
    """The uniforms of one recording block: ``[steps_per_block, n_neurons, synapses]`` float32.

    One vectorised draw per block instead of one per step keeps the scan body small. Always
    float32 bits, so a float64 run sees the same spike trains as a float32 one.

    Args:
        key: the run's key, ``jax.random.key(seed)``.
        block: block index (folded into the key).
        shape: ``(steps_per_block, n_neurons, synapses_per_neuron)``.

    Returns:
        Uniforms in [0, 1).
    """
    return jax.random.uniform(jax.random.fold_in(key, block), shape, jnp.float32)


def _simulate_one(rate: jax.Array, seed: jax.Array, p: ANParams, n_blocks: int,
                  steps_per_block: int, dtype: jnp.dtype) -> ANTrace:
    key = jax.random.key(seed)
    rate_dt = rate.astype(dtype) * jnp.asarray(p.dt, dtype)
    shape = (steps_per_block, p.n_neurons, p.synapses_per_neuron)
    zero = jnp.zeros((), dtype)

    def inner(carry, u):
        state, sums = carry
        state = step(state, u, rate_dt, p)
        sums = (sums[0] + state.ca, sums[1] + state.ip3,
                sums[2] + jnp.mean(jnp.clip(p.pr0 * (1.0 + (p.k_ag * state.ag + state.esp)
                                                      / 100.0), 0.0, 1.0)),
                sums[3] + state.esp, sums[4] + jnp.sum(state.spiked.astype(dtype)),
                sums[5] + state.released.astype(dtype))
        return (state, sums), None

    def outer(state, block):
        u = draw_uniforms(key, block, shape).astype(dtype)
        (state, sums), _ = jax.lax.scan(inner, (state, (zero,) * 6), u)
        return state, sums

    _, sums = jax.lax.scan(outer, initial_state(p, dtype), jnp.arange(n_blocks, dtype=jnp.int32))
    inv_steps = jnp.asarray(1.0 / steps_per_block, dtype)
    per_second = jnp.asarray(1.0 / (steps_per_block * p.dt), dtype)
    ca, ip3, pr, esp, spikes, releases = sums
    return ANTrace(ca=ca * inv_steps, ip3=ip3 * inv_steps, pr=pr * inv_steps,
                   esp=esp * inv_steps, post_rate_hz=spikes * per_second / p.n_neurons,
                   glu_rate_hz=releases * per_second)


@functools.partial(jax.jit, static_argnames=("p", "n_blocks", "steps_per_block", "dtype"))
def _simulate_grid(rates: jax.Array, seeds: jax.Array, p: ANParams, n_blocks: int,
                   steps_per_block: int, dtype: jnp.dtype) -> ANTrace:
    one = functools.partial(_simulate_one, p=p, n_blocks=n_blocks,
                            steps_per_block=steps_per_block, dtype=dtype)
    over_seeds = jax.vmap(one, in_axes=(None, 0))
    return jax.vmap(over_seeds, in_axes=(0, None))(rates, seeds)


def simulate(rates: np.ndarray | jax.Array | list[float], seeds: np.ndarray | jax.Array |
             list[int], p: ANParams | None = None, *, duration_s: float,
             record_every_s: float = 1.0, dtype: jnp.dtype = jnp.float32) -> ANTrace:
    """Simulates the AN model for every (rate, seed) pair, vectorised, jit-compiled.

    Every synapse receives an independent Poisson train at its instance's rate; each seed gives
    an independent random stream (the same seed gives the same trace).

    Args:
        rates: ``[R]`` presynaptic Poisson rates, Hz.
        seeds: ``[K]`` integer seeds.
        p: model parameters (default ``ANParams()``).
        duration_s: simulated time, s; a multiple of ``record_every_s``.
        record_every_s: length of the averaging blocks of the returned trace, s.
        dtype: float dtype of the state (float32 is enough; see the module docstring).

    Returns:
        An ``ANTrace`` whose fields are ``[R, K, duration_s / record_every_s]``.

    Raises:
        ValueError: for invalid parameters, rates, or times.
    """
    p = (p or ANParams()).validate()
    rates = np.atleast_1d(np.asarray(rates, dtype=np.float64))
    seeds = np.atleast_1d(np.asarray(seeds))
    check_rates(rates, p)
    if rates.ndim != 1 or seeds.ndim != 1 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"rates and seeds must be 1-D (seeds integer), got shapes {rates.shape}"
                         f" and {seeds.shape} ({seeds.dtype})")
    if np.any(seeds < 0) or np.any(seeds >= 2**32):
        raise ValueError(f"seeds must lie in [0, 2**32), got {seeds.tolist()}")
    n_blocks, steps_per_block = _check_times(p, duration_s, record_every_s)
    return _simulate_grid(jnp.asarray(rates, dtype), jnp.asarray(seeds, jnp.uint32), p,
                          n_blocks, steps_per_block, jnp.dtype(dtype))
