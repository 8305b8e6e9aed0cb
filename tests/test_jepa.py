import pytest
import torch
from scvi import REGISTRY_KEYS

from scjepa.module import CellEncoder, PerturbationEncoder
from scjepa.module._encoder import SparseLinear, input_width
from scjepa.module._jepa import BioJEPAModule
from scjepa.train import (
    covariance_loss,
    effective_rank,
    matched_population_loss,
    momentum_schedule,
    variance_loss,
)


def _tensors(n=32, genes=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(torch.full((n, genes), 2.0), generator=g)
    return {
        "X": counts,
        "batch": torch.zeros(n, 1),
        "labels": torch.zeros(n, 1),
        "perturbation": torch.tensor([0] * (n // 2) + [1] * (n // 2)).reshape(-1, 1).float(),
    }


def _module():
    features = torch.randn(20, 4)
    members = torch.tensor([[-1], [3]])
    return BioJEPAModule(
        n_input=20,
        n_latent=8,
        n_hidden=16,
        perturbation_features=features,
        perturbation_members=members,
        control_code=0,
        n_predictor_hidden=16,
    )


def test_target_encoder_gets_no_gradient_and_follows_by_ema():
    module = _module()
    assert all(not p.requires_grad for p in module.target_encoder.parameters())
    _, _, loss = module(_tensors())
    loss.loss.backward()
    assert all(p.grad is None for p in module.target_encoder.parameters())
    assert any(p.grad is not None for p in module.encoder.parameters())
    assert all(not p.requires_grad for p in module.target_encoder.parameters())

    with torch.no_grad():
        for p in module.encoder.parameters():
            p.add_(1.0)
    before = [p.clone() for p in module.target_encoder.parameters()]
    module.update_target_encoder(0.9)
    for b, t, o in zip(
        before, module.target_encoder.parameters(), module.encoder.parameters(), strict=True
    ):
        torch.testing.assert_close(t, 0.9 * b + 0.1 * o)
    assert momentum_schedule(0, 101, 0.996, 1.0) == 0.996
    assert momentum_schedule(100, 101, 0.996, 1.0) == 1.0


def test_loss_reports_every_term():
    module = _module()
    _, _, out = module(_tensors())
    for key in [
        "masked_prediction_loss",
        "perturbation_loss",
        "variance_loss",
        "effective_rank",
        "embedding_std_min",
        "delta_cosine_to_observed",
    ]:
        assert key in out.extra_metrics
        assert out.extra_metrics[key].ndim == 0
    assert float(out.extra_metrics["perturbation_loss"]) > 0


def test_sparse_first_layer_equals_dense():
    encoder = CellEncoder(30, 6, n_hidden=12).eval()
    x = torch.rand(10, 30) * (torch.rand(10, 30) > 0.7)
    torch.testing.assert_close(encoder(x.to_sparse_csr()), encoder(x), rtol=1e-5, atol=1e-5)


def test_sparse_first_layer_gradients_equal_dense_ones():
    torch.manual_seed(0)
    layer = SparseLinear(200, 8)
    # one empty cell: its row contributes nothing to either pass
    for density in (0.05, 0.6):  # the gather path, and the dense product above the limit
        x = torch.rand(12, 200) * (torch.rand(12, 200) < density)
        x[3] = 0
        upstream = torch.randn(12, 8)
        grads = []
        for batch in (x, x.to_sparse_csr()):
            layer.zero_grad()
            out = layer(batch)
            (out * upstream).sum().backward()
            grads.append((out.detach(), layer.weight.grad.clone(), layer.bias.grad.clone()))
        for dense_value, sparse_value in zip(*grads, strict=True):
            torch.testing.assert_close(sparse_value, dense_value, rtol=1e-4, atol=1e-5)


def test_first_layer_narrows_for_wide_gene_panels():
    assert input_width(600, 512) == 512
    assert input_width(1500, 512) == 512
    assert input_width(2000, 512) == 384
    assert input_width(20000, 512) == 64
    assert input_width(20000, 32) == 32
    assert CellEncoder(20000, 16).input.weight.shape == (20000, 64)


def test_embedding_models_have_no_expression_decoder():
    rna_only = BioJEPAModule(n_input=30)
    assert rna_only.decoder is None
    _, generative, out = rna_only(
        {
            REGISTRY_KEYS.X_KEY: torch.poisson(torch.rand(8, 30) * 3),
            REGISTRY_KEYS.BATCH_KEY: torch.zeros(8, 1),
            REGISTRY_KEYS.LABELS_KEY: torch.zeros(8, 1),
        }
    )
    assert generative == {}
    assert float(out.reconstruction_loss_sum) == 0.0
    assert torch.isfinite(out.loss)
    assert _module().decoder is not None
    with pytest.raises(ValueError, match="no expression decoder"):
        rna_only.decode(torch.zeros(2, rna_only.n_latent), torch.zeros(2))


def test_vicreg_prevents_collapse_on_toy_problem():
    """Two views of the same points: invariance alone collapses, VICReg keeps the spread."""
    torch.manual_seed(0)
    data = torch.randn(256, 10)

    def train(use_vicreg: bool) -> torch.Tensor:
        torch.manual_seed(1)
        net = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(300):
            a = net(data + 0.3 * torch.randn_like(data))
            b = net(data + 0.3 * torch.randn_like(data))
            loss = 25 * (a - b).pow(2).mean()
            if use_vicreg:
                loss = loss + 25 * (variance_loss(a) + variance_loss(b))
                loss = loss + covariance_loss(a) + covariance_loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return net(data).detach()

    collapsed, healthy = train(False), train(True)
    assert collapsed.std(dim=0).mean() < 0.05
    assert healthy.std(dim=0).mean() > 0.8
    assert effective_rank(healthy) > 3 * effective_rank(collapsed)


def test_optimal_matching_recovers_the_pairing():
    torch.manual_seed(0)
    target = torch.randn(16, 4)
    shuffled = target[torch.randperm(16)]
    matched, mean_gap = matched_population_loss(shuffled, target)
    assert float(matched) < 1e-10 and float(mean_gap) < 1e-10
    # random pairing of the same populations is penalised only by the matched term's absence
    random_pairs = (shuffled - target).pow(2).mean()
    assert float(random_pairs) > 0.1


def test_perturbation_encoder_members_and_interaction():
    torch.manual_seed(0)
    encoder = PerturbationEncoder(torch.randn(5, 3), n_output=4).eval()
    members, interaction = encoder(torch.tensor([[0, -1], [1, -1], [0, 1]]))
    assert members.shape == (3, 2, 4) and interaction.shape == (3, 4)
    torch.testing.assert_close(members[2, 0], members[0, 0])
    torch.testing.assert_close(members[2, 1], members[1, 0])
    assert torch.all(members[:2, 1] == 0)
    assert torch.all(interaction == 0)  # the interaction starts at zero
    control_members, control_interaction = encoder(torch.tensor([[-1, -1]]))
    assert torch.all(control_members == 0) and torch.all(control_interaction == 0)
    unseen, _ = encoder(torch.tensor([[4, -1]]))
    assert unseen.abs().sum() > 0
    with torch.no_grad():
        encoder.interaction[-1].bias.fill_(1.0)
    _, interaction = encoder(torch.tensor([[0, -1], [0, 1], [1, 0]]))
    assert torch.all(interaction[0] == 0) and interaction[1].abs().sum() > 0
    torch.testing.assert_close(interaction[2], interaction[1])  # members form a set


def test_unseen_members_are_embedded_from_seen_ones():
    torch.manual_seed(0)
    features = torch.randn(6, 3)
    seen = torch.tensor([True, True, True, False, False, False])
    encoder = PerturbationEncoder(features, n_output=4, seen=seen).eval()
    own = encoder.member(features)
    embedded = encoder.embed_entities(torch.arange(6))
    torch.testing.assert_close(embedded[:3], own[:3])  # seen members keep their own embedding
    keys = torch.nn.functional.normalize(features[:3] - features[:3].mean(0), dim=-1)
    queries = torch.nn.functional.normalize(features[3:] - features[:3].mean(0), dim=-1)
    weights = torch.softmax(queries @ keys.T / 0.1, dim=-1)  # feature weights start at one
    torch.testing.assert_close(embedded[3:], weights @ own[:3])
    with torch.no_grad():  # no resemblance to go by: the mean of the seen members
        encoder.log_temperature.fill_(20.0)
    torch.testing.assert_close(encoder.embed_entities(torch.tensor([4]))[0], own[:3].mean(0))
    # a seen member embedded from its neighbours leaves itself out
    with torch.no_grad():
        encoder.log_temperature.fill_(-20.0)
    nearest_other = encoder.neighbour_embedding(torch.tensor([0]))[0]
    assert not torch.allclose(nearest_other, own[0])
    assert any(torch.allclose(nearest_other, own[b]) for b in (1, 2))


def test_seen_members_train_on_their_own_features():
    torch.manual_seed(0)
    features = torch.randn(8, 3)
    encoder = PerturbationEncoder(features, n_output=4, seen=torch.arange(8) < 6)
    rows = torch.arange(8)
    first, second = encoder.embed_entities(rows), encoder.embed_entities(rows)
    torch.testing.assert_close(first[:6], encoder.member(features[:6]))
    torch.testing.assert_close(first, second)  # nothing random in training either
    torch.testing.assert_close(encoder.eval().embed_entities(rows), first)


def test_neighbour_loss_trains_only_the_neighbour_weights():
    torch.manual_seed(0)
    base = torch.randn(6, 4)
    twins = torch.cat([base, base + 0.05 * torch.randn(6, 4)])  # each entity has a near twin
    encoder = PerturbationEncoder(twins, n_output=4)
    assert float(encoder.neighbour_loss()) < 0.2  # a twin's embedding stands in for one's own
    encoder = PerturbationEncoder(torch.randn(12, 4), n_output=4)
    loss = encoder.neighbour_loss()
    loss.backward()
    assert encoder.feature_weights.grad.abs().sum() > 0 and encoder.log_temperature.grad is not None
    assert all(p.grad is None for p in encoder.member.parameters())
    optimiser = torch.optim.Adam([encoder.feature_weights, encoder.log_temperature], lr=0.05)
    for _ in range(50):
        optimiser.zero_grad()
        encoder.neighbour_loss().backward()
        optimiser.step()
    assert float(encoder.neighbour_loss()) < float(loss)
    few = PerturbationEncoder(torch.randn(5, 4), n_output=4, seen=torch.tensor([1, 1, 0, 0, 0]))
    assert float(few.neighbour_loss()) == 0.0


def test_perturbation_encoder_loads_weights_saved_without_neighbour_weights():
    features = torch.randn(5, 3)
    saved = PerturbationEncoder(features, n_output=4).state_dict()
    for name in ("feature_weights", "log_temperature", "interaction_scale"):
        del saved[name]
    encoder = PerturbationEncoder(features, n_output=4)
    encoder.load_state_dict(saved)
    torch.testing.assert_close(encoder.feature_weights, torch.ones(3))
    # models saved before cross-fitting keep their whole interaction
    assert float(encoder.interaction_scale) == 1.0


def test_combinations_start_additive_in_the_predicted_embedding():
    torch.manual_seed(0)
    module = BioJEPAModule(
        n_input=12,
        n_latent=8,
        n_hidden=16,
        perturbation_features=torch.randn(4, 3),
        perturbation_members=torch.tensor([[-1, -1], [0, -1], [1, -1], [0, 1]]),
        control_code=0,
    ).eval()
    with torch.no_grad():  # a trained-looking predictor, so shifts are not zero
        for parameter in module.predictor.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    context = torch.randn(5, 8)
    rows = {
        name: torch.tensor([code]).expand(5, -1)
        for name, code in {"none": [-1, -1], "a": [0, -1], "b": [1, -1], "ab": [0, 1]}.items()
    }
    z = {name: module.predict_under(context, members) for name, members in rows.items()}
    torch.testing.assert_close(z["none"], module.predict_unperturbed(context))
    reused = module.predict_under(
        context, rows["ab"], unperturbed=module.predict_unperturbed(context)
    )
    torch.testing.assert_close(reused, z["ab"])
    assert (z["a"] - z["none"]).abs().mean() > 1e-3
    torch.testing.assert_close(z["ab"] - z["none"], (z["a"] - z["none"]) + (z["b"] - z["none"]))
