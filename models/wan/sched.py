"""Flow-matching schedules and samplers (Wan2.1 semantics).

Training: x_s = (1 - s) x0 + s noise, the DiT predicts v = noise - x0 at
timestep t = 1000 s.  Sampling: the shifted schedule of the official flow
UniPC solver (order 2, bh2, predict-x0, lower order final step) or Euler.
"""
import torch

__all__ = ["shift_sigmas", "unipc_schedule", "euler_schedule", "FlowUniPC", "euler_step"]


def shift_sigmas(s, shift):
    """s' = shift s / (1 + (shift - 1) s), s a float64 tensor."""
    return shift * s / (1 + (shift - 1) * s)


def unipc_schedule(steps, shift, num_train_timesteps=1000):
    """-> (timesteps int64 [N], sigmas float32 [N+1], last = 0)."""
    smax = float(torch.tensor(1.0 - 1.0 / num_train_timesteps, dtype=torch.float32))  # float32(0.999)
    s = torch.linspace(smax, 0.0, steps + 1, dtype=torch.float64)[:-1]
    s = shift_sigmas(s, shift)
    ts = (s * num_train_timesteps).to(torch.int64)
    return ts, torch.cat([s, s.new_zeros(1)]).float()


def euler_schedule(steps, shift, num_train_timesteps=1000):
    """Like the DPM++ path: linspace(1, 0, N+1)[:N], shifted."""
    s = shift_sigmas(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:steps], shift)
    return (s * num_train_timesteps).to(torch.int64), torch.cat([s, s.new_zeros(1)]).float()


def euler_step(v, i, x, sigmas):
    return x + (sigmas[i + 1] - sigmas[i]) * v


def _lam(sig):
    # lambda = ln(alpha) - ln(sigma), alpha = 1 - sigma (IEEE inf at the ends)
    return torch.log(1 - sig) - torch.log(sig)


def _coeffs(h, rks, order):
    hh = -h  # predict_x0
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    B_h = torch.expm1(hh)  # bh2
    fac = 1
    R, b = [], []
    for i in range(1, order + 1):
        R.append(torch.pow(rks, i - 1))
        b.append(h_phi_k * fac / B_h)
        fac *= i + 1
        h_phi_k = h_phi_k / hh - 1 / fac
    return torch.stack(R), torch.stack(b) if isinstance(b[0], torch.Tensor) else torch.tensor(b), h_phi_1, B_h


class FlowUniPC:
    """Stateful multistep UniPC (UniP predictor + UniC corrector) on flow sigmas."""

    def __init__(self, sigmas, order=2):
        self.sigmas = sigmas
        self.order = order
        self.n = len(sigmas) - 1
        self.outs = []          # x0 predictions, newest last
        self.last_sample = None
        self.this_order = 1
        self.lower = 0
        self.i = 0

    def _pred(self, x, order):
        i, s = self.i, self.sigmas
        sig_t, sig_s0 = s[i + 1], s[i]
        a_t = 1 - sig_t
        lam_s0 = _lam(sig_s0)
        h = _lam(sig_t) - lam_s0
        m0 = self.outs[-1]
        rks, D1s = [], []
        for k in range(1, order):
            rk = (_lam(s[i - k]) - lam_s0) / h
            rks.append(rk)
            D1s.append((self.outs[-(k + 1)] - m0) / rk)
        rks.append(torch.ones((), dtype=torch.float32))
        R, b, h_phi_1, B_h = _coeffs(h, torch.stack(rks), order)
        x_t = sig_t / sig_s0 * x - a_t * h_phi_1 * m0
        if D1s:
            rhos = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(R[:-1, :-1], b[:-1])
            x_t = x_t - a_t * B_h * sum(r * d for r, d in zip(rhos, D1s))
        return x_t

    def _corr(self, m_t, last, order):
        i, s = self.i, self.sigmas
        sig_t, sig_s0 = s[i], s[i - 1]
        a_t = 1 - sig_t
        lam_s0 = _lam(sig_s0)
        h = _lam(sig_t) - lam_s0
        m0 = self.outs[-1]
        rks, D1s = [], []
        for k in range(1, order):
            rk = (_lam(s[i - (k + 1)]) - lam_s0) / h
            rks.append(rk)
            D1s.append((self.outs[-(k + 1)] - m0) / rk)
        rks.append(torch.ones((), dtype=torch.float32))
        R, b, h_phi_1, B_h = _coeffs(h, torch.stack(rks), order)
        rhos = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(R, b)
        x_t = sig_t / sig_s0 * last - a_t * h_phi_1 * m0
        corr = sum(r * d for r, d in zip(rhos[:-1], D1s)) if D1s else 0
        return x_t - a_t * B_h * (corr + rhos[-1] * (m_t - m0))

    def step(self, v, x):
        """v: model output (flow velocity) at sigmas[i] for sample x -> next sample."""
        x0 = x - self.sigmas[self.i] * v
        if self.i > 0 and self.last_sample is not None:
            x = self._corr(x0, self.last_sample, self.this_order)
        self.outs = (self.outs + [x0])[-self.order:]
        self.this_order = min(self.order, self.n - self.i, self.lower + 1)
        self.last_sample = x
        x = self._pred(x, self.this_order)
        self.lower = min(self.lower + 1, self.order)
        self.i += 1
        return x
