"""One initialisation rule for every spectral kernel (spectral_init_std)."""

import math

import pytest
import torch

from grepsnet_sciml import Reps
from grepsnet_sciml.groups import C4, D4
from grepsnet_sciml.layers import EquivariantLinear
from grepsnet_sciml.layers._spectral_kernels import spectral_init_std
from grepsnet_sciml.layers.spectral import SpectralConv2d
from grepsnet_sciml.models.baselines import FNOBaseline
from grepsnet_sciml.models.gfno import GFNO2d
from grepsnet_sciml.models.grepsfno import GRepsFNO2d


def test_rule_is_kaiming_uniform_over_channels_times_half_window():
    # G-FNO-p4 at width 10, modes 8: fan_in = 40 real channels x 15 x 8 modes
    assert spectral_init_std(40, 8) == pytest.approx(1 / math.sqrt(3 * 40 * 15 * 8), rel=1e-12)
    assert spectral_init_std(40, 8) == pytest.approx(0.00833, abs=1e-5)
    with pytest.raises(ValueError, match="modes: expected a positive integer, got 0"):
        spectral_init_std(40, 0)


def _rms(t: torch.Tensor) -> float:
    return float(t.detach().abs().pow(2).mean().sqrt())


@pytest.mark.parametrize("regular", ["shared", "group"])
@pytest.mark.parametrize("group", [C4(), D4()])
def test_regular_kernels_start_at_the_rule_after_the_hermitian_average(regular, group):
    torch.manual_seed(0)
    rep = Reps("6xR", group)
    conv = SpectralConv2d(rep, rep, modes=6, regular=regular)
    sigma = spectral_init_std(rep.dim, 6)
    free = conv.weight_regular
    assert _rms(free) == pytest.approx(math.sqrt(2) * sigma, rel=0.02)
    kernel = conv.regular_kernel().detach()
    # off the self-conjugate mode k = 0 each real part has variance sigma^2
    real_parts = torch.view_as_real(kernel[..., kernel.shape[-1] // 2 + 1 :]).flatten()
    assert float(real_parts.std()) == pytest.approx(sigma, rel=0.05)


def test_typed_free_weights_follow_the_rule():
    torch.manual_seed(0)
    rep_in, rep_out = Reps("4xT0 + 3xT0p + 2xT1 + T2", D4()), Reps("3xT0p + 2xT1", D4())
    conv = SpectralConv2d(rep_in, rep_out, modes=5)
    sigma = spectral_init_std(rep_in.dim, 5)
    weights = torch.cat([w.flatten() for w in conv.pairs.weights.values()])
    assert _rms(weights) == pytest.approx(math.sqrt(2) * sigma, rel=0.03)


@pytest.mark.parametrize("make,channels", [
    (lambda: GFNO2d(10, 1, width=10, modes=8, n_layers=2, group="p4"), 40),
    (lambda: GRepsFNO2d(Reps("10xT0p", D4()), Reps("T0p", D4()), width=6, modes=8,
                        n_layers=2), 48),
])
def test_models_spectral_layers_share_the_rule(make, channels):
    torch.manual_seed(0)
    model = make()
    convs = [m for m in model.modules() if isinstance(m, SpectralConv2d)]
    assert len(convs) == 2
    for conv in convs:
        assert conv.rep_in.dim == channels
        free = [p for n, p in conv.named_parameters()]
        rms = _rms(torch.cat([p.flatten() for p in free]))
        assert rms == pytest.approx(math.sqrt(2) * spectral_init_std(channels, 8), rel=0.03)


def test_fno_baseline_spectral_weights_follow_the_rule():
    torch.manual_seed(0)
    model = FNOBaseline(Reps("10xT0p", D4()), Reps("T0p", D4()), modes=8, width=20)
    sigma = spectral_init_std(20, 8)
    for conv in model.fno.fno_blocks.convs:
        w = conv.weight.to_tensor()
        assert tuple(w.shape) == (20, 20, 15, 8)  # |kx| <= 7 (15 rows) x ky = 0..7
        parts = torch.view_as_real(w.detach()).flatten()
        assert float(parts.std()) == pytest.approx(sigma, rel=0.02)


@pytest.mark.parametrize("regular", ["mean", "conv"])
def test_pointwise_layers_start_like_torch_conv2d(regular):
    """1x1 maps: weights of std 1/sqrt(3 fan_in), invariant biases uniform in 1/sqrt(fan_in)."""
    torch.manual_seed(0)
    group = C4()
    lin = EquivariantLinear(Reps("40xR", group), Reps("40xR", group), domain="grid",
                            regular=regular)
    w = lin.weight_regular.detach()
    fan = 40 * (group.order if regular == "conv" else 1)
    assert float(w.std()) == pytest.approx(1 / math.sqrt(3 * fan), rel=0.05)
    bound = 1 / math.sqrt(40 * group.order)
    largest = float(lin.bias.detach().abs().max())
    assert 0.8 * bound < largest <= bound  # uniform, not zero
    typed = EquivariantLinear(Reps("30xT0 + 30xT1", D4()), Reps("30xT0 + 30xT1", D4()),
                              domain="grid")
    free = torch.cat([p.detach().flatten() for p in typed.pairs.weights.values()])
    assert float(free.pow(2).mean().sqrt()) == pytest.approx(1 / math.sqrt(3 * 60), rel=0.1)
