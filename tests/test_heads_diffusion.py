"""The diffusion core, the noise predictors' condition-once split, and the baselines' closed forms."""
from __future__ import annotations

import math

import pytest
import torch

import registry
from plugins.heads._diffusion import Diffusion, timestep_embedding

MU, SPREAD = 0.7, 0.25  # a Gaussian target whose exact noise predictor is known


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion()


def exact_eps(diffusion):
    """E[eps | x_t] for x0 ~ N(MU, SPREAD^2): the perfect noise predictor."""
    def eps(x, t):
        alphabar = diffusion.alphas_cumprod[t].double()
        return (1 - alphabar).sqrt() * (x - alphabar.sqrt() * MU) / (alphabar * SPREAD**2 + 1 - alphabar)
    return eps


def test_schedule_buffers_follow_their_definitions(diffusion):
    """Each of the reference's eight buffers (names and order of its regressor_state_dict) against its definition,
    written out here in float64 from beta_t = linspace(1e-4, 0.02, 1000) (Ho et al. 2020)."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alphabar = torch.cumprod(1 - betas, 0)
    alphabar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphabar[:-1]])
    definitions = {
        "betas": betas, "alphas_cumprod": alphabar, "alphas_cumprod_prev": alphabar_prev,
        "sqrt_alphas_cumprod": alphabar.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - alphabar).sqrt(),
        "posterior_variance": betas * (1 - alphabar_prev) / (1 - alphabar),
        "sqrt_recip_alphas_cumprod": alphabar.rsqrt(), "sqrt_recipm1_alphas_cumprod": (1 / alphabar - 1).sqrt(),
    }
    buffers = dict(diffusion.named_buffers())
    assert list(buffers) == list(definitions)
    for name, expected in definitions.items():
        assert buffers[name].dtype == torch.float32, name
        torch.testing.assert_close(buffers[name].double(), expected, rtol=1e-6, atol=0, msg=name)
    cosine = Diffusion(schedule="cosine")
    assert cosine.alphas_cumprod[-1] < 1e-3 and cosine.betas.max() <= 0.999


def test_timestep_embedding_is_sin_then_cos_of_geometric_frequencies():
    embedding = timestep_embedding(torch.tensor([0, 5]), 8)
    assert embedding.shape == (2, 8)
    torch.testing.assert_close(embedding[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    frequencies = torch.tensor([1.0, 10000 ** (-1 / 3), 10000 ** (-2 / 3), 1e-4])
    torch.testing.assert_close(embedding[1], torch.cat([(5 * frequencies).sin(), (5 * frequencies).cos()]))


def test_ddpm_with_the_exact_noise_recovers_the_target_distribution(diffusion):
    torch.manual_seed(0)
    x = diffusion.reverse(exact_eps(diffusion), torch.randn(1, 20000, dtype=torch.float64), sampler="ddpm")
    assert x.mean().item() == pytest.approx(MU, abs=0.01)
    assert x.std().item() == pytest.approx(SPREAD, rel=0.03)


def test_ddim_is_deterministic_and_converges_with_steps(diffusion):
    noise = torch.randn(1, 20000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    coarse = diffusion.reverse(exact_eps(diffusion), noise, steps=10)
    torch.testing.assert_close(coarse, diffusion.reverse(exact_eps(diffusion), noise, steps=10))
    fine = diffusion.reverse(exact_eps(diffusion), noise, steps=200)
    assert fine.mean().item() == pytest.approx(MU, abs=0.01)
    assert fine.std().item() == pytest.approx(SPREAD, rel=0.05)
    assert coarse.std().item() < 0.8 * SPREAD  # 10 deterministic steps shrink a narrow target


# With the exact eps of a N(MU, SPREAD^2) target and eta 0 every DDIM step is affine in x_t, so 10 steps map x_T to
# intercept + slope * x_T: the mean and sd of the samples. Computed by hand in float64 as the product of the steps'
# d x_prev / d x_t = sqrt(abar_prev) (1 - sqrt(1 - abar_t) c_t) / sqrt(abar_t) + sqrt(1 - abar_prev) c_t,
# c_t = sqrt(1 - abar_t) / (abar_t SPREAD^2 + 1 - abar_t) (README: perf/ddim_grids.py's sampled 0.698 / 0.699 and
# 0.146 / 0.140 under the linear schedule, 0.679 / 0.700 and 0.194 / 0.189 under the cosine one).
TEN_STEP_DDIM = {("linear", False): (0.698315, 0.146397), ("linear", True): (0.699378, 0.139765),
                 ("cosine", False): (0.679162, 0.193707), ("cosine", True): (0.699993, 0.188603)}


@pytest.mark.parametrize("schedule, faithful", list(TEN_STEP_DDIM))
def test_ten_step_ddim_with_the_exact_noise_is_the_closed_form_affine_map(schedule, faithful):
    """Both grids (the project's 900, .., 0 and the reference's 999, .., 99 then x0) against the closed form."""
    diffusion = Diffusion(schedule=schedule)
    x = diffusion.reverse(exact_eps(diffusion), torch.tensor([[0.0, 1.0]], dtype=torch.float64), steps=10,
                          faithful=faithful)
    intercept, slope = x[0, 0].item(), (x[0, 1] - x[0, 0]).item()
    assert (intercept, slope) == pytest.approx(TEN_STEP_DDIM[schedule, faithful], rel=1e-4)


@pytest.mark.parametrize("faithful", [False, True])
def test_ddim_sigma_is_the_ddpm_posterior_std_unless_faithful(diffusion, faithful):
    """Two steps t -> prev -> done with eps = 0 from x_T = 0: the result is sigma_t z / sqrt(alphabar_prev)
    (t, prev = 500, 0 on the project's grid and 999, 499 on the reference's)."""
    zero_eps = lambda x, t: torch.zeros_like(x)
    x = diffusion.reverse(zero_eps, torch.zeros(1, 40000, dtype=torch.float64), steps=2, eta=1.0,
                          faithful=faithful, generator=torch.Generator().manual_seed(0))
    t, prev = (999, 499) if faithful else (500, 0)
    alphabar, alphabar_prev = diffusion.alphas_cumprod[t].double(), diffusion.alphas_cumprod[prev].double()
    jump = diffusion.betas[t].double() if faithful else 1 - alphabar / alphabar_prev
    sigma = ((1 - alphabar_prev) / (1 - alphabar) * jump).sqrt()
    assert x.std().item() == pytest.approx((sigma / alphabar_prev.sqrt()).item(), rel=0.02)


def test_faithful_sigma_equals_the_correct_one_without_skipped_steps(diffusion):
    """With all 1000 steps both grids are 999, .., 0 and the two sigmas agree up to float32 rounding."""
    eps, noise = exact_eps(diffusion), torch.randn(2, 50, dtype=torch.float64)
    runs = [diffusion.reverse(eps, noise, steps=1000, eta=1.0, faithful=faithful,
                              generator=torch.Generator().manual_seed(1)) for faithful in (False, True)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-3, atol=1e-4)  # float32 schedule rounding


def test_clipping_moves_every_intermediate_x_t_towards_the_clipped_x0(diffusion):
    """Each recorded x_t is the DDIM update written out here with x0 clamped to [-1, 2] and the noise
    that this clamped x0 implies, not only the last one (which is the clamped x0 itself)."""
    wild = lambda x, t: torch.full_like(x, -50.0)
    trajectory = diffusion.reverse(wild, torch.zeros(3, 4), steps=5, clip_x0=(-1.0, 2.0), record=True)
    assert trajectory.shape == (6, 3, 4)
    alphabar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    x = torch.zeros(3, 4, dtype=torch.float64)
    for index, t in enumerate([800, 600, 400, 200, 0]):
        a, a_prev = alphabar[t], alphabar[t - 200] if t else torch.tensor(1.0, dtype=torch.float64)
        x0 = ((x + (1 - a).sqrt() * 50) / a.sqrt()).clamp(-1, 2)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        torch.testing.assert_close(trajectory[index + 1].double(), x, rtol=1e-4, atol=1e-5)
    assert 0 < trajectory[1].min() < 2.0 < diffusion.reverse(wild, torch.zeros(3, 4), steps=5, record=True)[1].min()


@pytest.mark.parametrize("predictor", ["legacy_attention", "deep_attention", "mlp"])
def test_condition_work_done_once_matches_the_naive_evaluation(predictor):
    """Each predictor's prepare/forward split equals evaluating the full network on repeated rows."""
    torch.manual_seed(0)
    head = registry.build("head", "mcsdr", condition_dim=12, predictor=predictor, width=32, heads=4,
                          time_dim=16, tokens=3).eval()
    net = head.noise_predictor
    condition, y_t = torch.randn(5, 12), torch.randn(5, 7)
    with torch.no_grad():
        fast = head.denoiser(condition)(y_t, 300)
        rows = condition.repeat_interleave(7, 0)
        time = head.time_mlp(torch.full((35,), 300))
        query = net.map_y_t(torch.cat([y_t.reshape(-1, 1), time], 1))
        if predictor == "mlp":
            h = net.trunk(torch.nn.functional.gelu(query + net.map_cond(rows)))
        else:
            tokens = net.map_cond(rows).view(35, -1, 32)
            blocks = [net] if predictor == "legacy_attention" else net.blocks
            h = query[:, None]
            for block in blocks:
                attended, _ = block.cross_attention(h, tokens, tokens, need_weights=False)
                h = block.norm1(h + attended)
                h = block.norm2(h + block.ffn(h))
            h = h[:, 0]
        naive = net.final_layer(h).view(5, 7)
    torch.testing.assert_close(fast, naive, rtol=1e-5, atol=1e-5)


def test_mcsdr_options_reach_the_sampler():
    torch.manual_seed(0)
    head = registry.build("head", "mcsdr", condition_dim=3, width=16, heads=2, time_dim=8, faithful=True,
                          sampler="ddpm", timesteps=50, schedule="cosine")
    assert head.target_scale == "raw" and head.betas.shape == (50,)
    loss = head.loss(torch.randn(4, 3), torch.randn(4))
    loss.backward()
    assert loss.ndim == 0 and head.noise_predictor.map_cond.weight.grad is not None
    samples = head.sample(torch.randn(4, 3), 9)
    assert samples.shape == (4, 9)
    with pytest.raises(ValueError, match="predictor"):
        registry.build("head", "mcsdr", condition_dim=3, predictor="transformer")


@pytest.mark.parametrize("name, params", [("gaussian", {}), ("mdn", {"components": 3})])
def test_closed_forms_agree_with_each_other_and_with_samples(name, params):
    torch.manual_seed(0)
    head = registry.build("head", name, condition_dim=2, width=16, depth=1, **params).eval()
    with torch.no_grad():
        head.out.bias.normal_()  # spread the mixture so the checks see more than one bump
        condition = torch.randn(3, 2)
        grid = torch.linspace(-12, 12, 4801)
        rows, points = condition.repeat_interleave(len(grid), 0), grid.repeat(3)
        density = head.log_prob(rows, points).exp().view(3, -1)
        integral = torch.cumulative_trapezoid(density, grid, dim=1)
        cdf = head.cdf(rows, points).view(3, -1)[:, 1:] - head.cdf(condition, grid[:1].expand(3))[:, None]
        torch.testing.assert_close(integral, cdf, atol=2e-3, rtol=0)
        mean = torch.trapezoid(density * grid, grid, dim=1)
        torch.testing.assert_close(head.mean(condition), mean, atol=2e-3, rtol=0)
        std = torch.trapezoid(density * (grid - mean[:, None]) ** 2, grid, dim=1).sqrt()
        torch.testing.assert_close(head.std(condition), std, atol=2e-3, rtol=0)
        samples = head.sample(condition, 40000)
        torch.testing.assert_close(samples.mean(1), mean, atol=0.05, rtol=0)
        torch.testing.assert_close(samples.std(1), std, atol=0.05, rtol=0)


def test_gaussian_nll_and_beta_nll():
    torch.manual_seed(0)
    condition, target = torch.randn(6, 4), torch.randn(6)
    plain = registry.build("head", "gaussian", condition_dim=4, width=8, depth=1, dropout=0.0)
    weighted = registry.build("head", "gaussian", condition_dim=4, width=8, depth=1, dropout=0.0, beta_nll=0.5)
    weighted.load_state_dict(plain.state_dict())
    mean, std = plain.mean(condition), plain.std(condition)
    nll = 0.5 * ((target - mean) / std) ** 2 + std.log() + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(plain.loss(condition, target), nll.mean())
    torch.testing.assert_close(weighted.loss(condition, target), (nll * std.detach()).mean())
    torch.testing.assert_close(-nll, plain.log_prob(condition, target))


@pytest.mark.parametrize("name", ["mse", "l1", "gaussian", "mdn", "mcsdr", "card", "ensemble", "mc_dropout",
                                  "quantile", "evidential"])
def test_heads_are_registered_with_metadata_and_a_search_space(name):
    record = registry.describe("head", name)
    assert record.metadata["probabilistic"] is (name not in ("mse", "l1"))
    assert "lr" in record.search_space and len(record.search_space) >= 3
    head = registry.build("head", name, condition_dim=5)
    assert head.sample(torch.randn(2, 5), 3).shape == (2, 3)
    loss = head.loss(torch.randn(4, 5), torch.randn(4))
    assert loss.ndim == 0 and torch.isfinite(loss)
