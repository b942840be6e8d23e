"""Post-hoc adjustments: the fitting maths against independent references, the config fields and their errors, the
models' inference logits, training losses left alone, save -> reload, remote code and pipeline()."""

import json
import math
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import balanced_accuracy_score
from transformers import AutoModelForImageClassification

import modeling_livt as ml
from modeling_livt.evaluation.posthoc import (
    MAX_TEMPERATURE,
    MIN_TEMPERATURE,
    balanced_accuracy,
    choose_logit_adjustment_tau,
    choose_tau_norm,
    fit_posthoc,
    fit_temperature,
    parse_posthoc_methods,
    parse_tau_grid,
)
from modeling_livt.models.posthoc_adjustment import tau_normalized_weight
from tests.helpers import run_without_our_package, tiny_livt_config

COUNTS = [60, 30, 12, 5]
DEIT_TINY = dict(image_size=32, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=64)
POSTHOC = dict(posthoc_tau_norm=0.7, posthoc_logit_adjustment_tau=0.9, posthoc_temperature=1.7)


def _pixels(batch=3, seed=0):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _random_logits(n=400, c=5, seed=0, scale=3.0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, c, (n,), generator=generator)
    logits = torch.randn(n, c, generator=generator) * scale
    logits[torch.arange(n), labels] += 2.0  # informative, imperfect logits
    return logits.double(), labels


def _nll(logits, labels, temperature):
    return F.cross_entropy(logits / temperature, labels).item()


# ---------------------------------------------------------------------------------------------------------------------
# Temperature
# ---------------------------------------------------------------------------------------------------------------------
def test_temperature_matches_the_analytic_optimum():
    # two classes, every example has logits [a, 0], a fraction q is labelled 0: the NLL is minimal where
    # sigmoid(a / T) = q, i.e. T = a / logit(q)
    a, q, n = 4.0, 0.8, 500
    logits = torch.tensor([[a, 0.0]] * n, dtype=torch.float64)
    labels = torch.tensor([0] * int(q * n) + [1] * (n - int(q * n)))
    assert fit_temperature(logits, labels) == pytest.approx(a / math.log(q / (1 - q)), rel=1e-9)


def test_temperature_matches_a_brute_force_grid():
    logits, labels = _random_logits()
    fitted = fit_temperature(logits, labels)
    grid = np.exp(np.linspace(math.log(0.05), math.log(20), 20001))
    losses = [_nll(logits, labels, t) for t in grid]
    best = grid[int(np.argmin(losses))]
    assert fitted == pytest.approx(best, rel=1e-3)
    assert _nll(logits, labels, fitted) <= min(losses) + 1e-12


def test_temperature_stops_at_its_bounds():
    separable = torch.tensor([[5.0, 0.0], [0.0, 5.0]] * 10)
    assert fit_temperature(separable, torch.tensor([0, 1] * 10)) == MIN_TEMPERATURE  # NLL falls as T -> 0
    wrong = torch.tensor([[5.0, 0.0], [0.0, 5.0]] * 10)
    assert fit_temperature(wrong, torch.tensor([1, 0] * 10)) == MAX_TEMPERATURE  # uniform is best: T -> inf


# ---------------------------------------------------------------------------------------------------------------------
# Balanced accuracy, logit adjustment, tau-normalisation
# ---------------------------------------------------------------------------------------------------------------------
def test_balanced_accuracy_matches_sklearn():
    logits, labels = _random_logits(n=97, c=6, seed=3, scale=5.0)
    expected = balanced_accuracy_score(labels.numpy(), logits.argmax(1).numpy())
    assert balanced_accuracy(logits, labels) == pytest.approx(expected, abs=1e-12)


def _reference_search(grid, predictions_for, labels):
    scores = [balanced_accuracy_score(labels, predictions_for(tau)) for tau in grid]
    best = max(scores)
    return min(tau for tau, s in zip(grid, scores, strict=True) if s == best), scores  # ties: smallest tau


def test_logit_adjustment_search_matches_a_reference_loop():
    counts = [500, 120, 40, 9, 3]
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(5).repeat_interleave(40)  # a balanced validation split
    prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    # a model biased towards the head classes: its logits carry +log(prior)
    logits = torch.randn(200, 5, generator=generator, dtype=torch.float64) + prior.log() + 1.5 * F.one_hot(labels, 5)
    grid = parse_tau_grid("0:2:0.25")
    search = choose_logit_adjustment_tau(logits, labels, counts, grid)
    log_prior = np.log(np.asarray(counts) / sum(counts))
    tau, scores = _reference_search(grid, lambda t: (logits.numpy() - t * log_prior).argmax(1), labels.numpy())
    assert search.grid == grid and search.tau == tau
    np.testing.assert_allclose(search.balanced_accuracy, scores, rtol=0, atol=1e-12)
    assert search.tau > 0  # the head bias is worth removing


def test_tau_normalized_weight_is_kangs_pnorm():
    weight = torch.randn(7, 5, generator=torch.Generator().manual_seed(0))
    expected = weight.clone()
    for row in range(7):  # classifier-balancing's pnorm: ws[i] = ws[i] / norm(ws[i]) ** p
        expected[row] = weight[row] / torch.pow(torch.norm(weight[row], 2), 0.6)
    torch.testing.assert_close(tau_normalized_weight(weight, 0.6), expected)
    assert torch.equal(tau_normalized_weight(weight, 0.0), weight)
    assert torch.isfinite(tau_normalized_weight(torch.zeros(2, 3), 1.0)).all()  # an all-zero row stays finite


def test_tau_norm_search_averages_tau_normalised_heads():
    generator = torch.Generator().manual_seed(2)
    heads = [torch.nn.Linear(6, 4), torch.nn.Linear(6, 4)]
    with torch.no_grad():
        for head in heads:
            head.weight.copy_(torch.randn(4, 6, generator=generator) * torch.tensor([[4.0], [2.0], [1.0], [0.5]]))
    features = [torch.randn(80, 6, generator=generator) for _ in heads]
    labels = torch.arange(4).repeat(20)
    grid = [0.0, 0.5, 1.0, 1.5]

    def predictions(tau):
        logits = 0
        for x, head in zip(features, heads, strict=True):
            w = head.weight.detach().numpy()
            w = w / np.linalg.norm(w, axis=1, keepdims=True) ** tau
            logits = logits + (x.numpy() @ w.T + head.bias.detach().numpy()) / 2
        return logits.argmax(1)

    tau, scores = _reference_search(grid, predictions, labels.numpy())
    search = choose_tau_norm(list(zip(features, heads, strict=True)), labels, grid)
    assert search.tau == tau
    np.testing.assert_allclose(search.balanced_accuracy, scores, rtol=0, atol=1e-12)


def test_fit_posthoc_fits_in_application_order():
    logits, labels = _random_logits(c=4, seed=5)
    counts = [100, 40, 10, 3]
    fit = fit_posthoc("temperature,logit_adjustment", logits, labels, counts, logit_adjustment_grid="0,0.5,1")
    assert fit.tau_norm is None and set(fit.searches) == {"logit_adjustment", "temperature"}
    adjusted = logits - fit.logit_adjustment_tau * torch.tensor(counts, dtype=torch.float64).div(sum(counts)).log()
    assert fit.temperature == pytest.approx(fit_temperature(adjusted, labels), rel=1e-12)  # fitted on adjusted logits
    torch.testing.assert_close(fit.apply(logits, counts), adjusted / fit.temperature)
    assert fit.config_values() == {"posthoc_tau_norm": None, "posthoc_logit_adjustment_tau": fit.logit_adjustment_tau,
                                   "posthoc_temperature": fit.temperature}


# ---------------------------------------------------------------------------------------------------------------------
# Bad inputs
# ---------------------------------------------------------------------------------------------------------------------
def test_bad_methods_and_grids_are_clear_errors():
    assert parse_posthoc_methods("temperature, tau-norm,logit_adjustment") == [
        "tau_norm", "logit_adjustment", "temperature"]
    with pytest.raises(ValueError, match="unknown post-hoc method 'platt'; choose from tau_norm, logit_adjustment"):
        parse_posthoc_methods("temperature,platt")
    assert parse_tau_grid("0:1:0.25") == [0.0, 0.25, 0.5, 0.75, 1.0]
    for bad, message in (("", "is empty"), ("1:0:0.1", "is empty"), ("0:1:0", "STEP must be positive"),
                         ("0:1", "START:STOP:STEP"), ("a,b", "numbers separated by commas"), ([], "is empty")):
        with pytest.raises(ValueError, match=message):
            parse_tau_grid(bad)
    logits, labels = _random_logits(c=3)
    with pytest.raises(ValueError, match="tau grid .* is empty"):
        choose_logit_adjustment_tau(logits, labels, [3, 2, 1], [])
    with pytest.raises(ValueError, match="needs class_counts"):
        choose_logit_adjustment_tau(logits, labels, None, [1.0])
    with pytest.raises(ValueError, match="a zero count has log pi = -inf"):
        choose_logit_adjustment_tau(logits, labels, [3, 0, 1], [1.0])
    with pytest.raises(ValueError, match="tau_norm needs the classifier heads"):
        fit_posthoc(["tau_norm"], logits, labels)
    with pytest.raises(ValueError, match="no post-hoc method given"):
        fit_posthoc("", logits, labels)
    with pytest.raises(ValueError, match="0 validation examples"):
        fit_temperature(torch.zeros(0, 3), torch.zeros(0))


@pytest.mark.parametrize("config_class", [ml.LiVTConfig, ml.DeiTLTConfig])
def test_bad_posthoc_config_values_are_clear_errors(config_class):
    plain_loss = {"loss_type": "ce"} if config_class is ml.LiVTConfig else {"cls_loss_type": "ce"}
    base = dict(DEIT_TINY, num_labels=4, **plain_loss)
    for fields, message in (
        (dict(posthoc_temperature=0.0), "posthoc_temperature=0.0 must be a positive finite number"),
        (dict(posthoc_temperature=float("nan")), "posthoc_temperature=nan"),
        (dict(posthoc_temperature=True), "posthoc_temperature=True"),
        (dict(posthoc_tau_norm=-0.5), "posthoc_tau_norm=-0.5 must be a finite number >= 0"),
        (dict(posthoc_logit_adjustment_tau=1.0), "posthoc_logit_adjustment_tau needs `class_counts`"),
        (dict(posthoc_logit_adjustment_tau=1.0, class_counts=[5, 0, 2, 1]), "class 1 has no training images"),
    ):
        with pytest.raises(ValueError, match=message):
            config_class(**base, **fields)


# ---------------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------------
def _reference_adjusted(heads_and_features, counts, tau_norm, la_tau, temperature):
    """Independent reference: (mean over heads of x W~^T + b, W~_j = W_j / ||W_j||^tau) - tau log pi, then / T."""
    logits = 0
    for features, head in heads_and_features:
        weight = head.weight / head.weight.norm(dim=1, keepdim=True) ** tau_norm
        logits = logits + features @ weight.T + head.bias
    logits = logits / len(heads_and_features)
    prior = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    return (logits - la_tau * prior.log().float()) / temperature


def test_livt_applies_posthoc_in_eval_and_never_to_the_loss():
    torch.manual_seed(0)
    model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, loss_type="bal_bce"))
    x, y = _pixels(), torch.tensor([0, 2, 3])
    model.train()
    torch.manual_seed(1)
    train_plain = model(x, labels=y)
    model.eval()
    eval_plain = model(x, labels=y)
    features = model.pooled_features(model.livt(x).last_hidden_state)
    model.config.update(POSTHOC)
    model.train()
    torch.manual_seed(1)
    train_adjusted = model(x, labels=y)
    assert torch.equal(train_adjusted.loss, train_plain.loss) and torch.equal(train_adjusted.logits, train_plain.logits)
    model.eval()
    eval_adjusted = model(x, labels=y)
    assert torch.equal(eval_adjusted.loss, eval_plain.loss)  # the loss is the raw logits' loss
    expected = _reference_adjusted([(features, model.classifier)], COUNTS, 0.7, 0.9, 1.7)
    torch.testing.assert_close(eval_adjusted.logits, expected)
    assert not torch.allclose(eval_adjusted.logits, eval_plain.logits)


def test_deit_lt_tau_normalises_both_heads_and_keeps_their_raw_logits():
    torch.manual_seed(0)
    model = ml.DeiTLTForImageClassification(ml.DeiTLTConfig(**DEIT_TINY, class_counts=COUNTS, **POSTHOC)).eval()
    x, y = _pixels(), torch.tensor([1, 0, 3])
    out = model(x, labels=y)
    tokens = model.deit_lt(x).last_hidden_state
    heads = [(tokens[:, 0], model.classifier), (tokens[:, 1], model.distillation_classifier)]
    torch.testing.assert_close(out.logits, _reference_adjusted(heads, COUNTS, 0.7, 0.9, 1.7))
    torch.testing.assert_close(out.cls_logits, model.classifier(tokens[:, 0]), rtol=0, atol=0)
    # cls_loss_type "ce" on both raw heads (the model's own loss trains both with the labels)
    raw = (F.cross_entropy(out.cls_logits, y) + F.cross_entropy(out.distillation_logits, y)) / 2
    torch.testing.assert_close(out.loss, raw)
    model.train()
    torch.manual_seed(2)
    train_adjusted = model(x, labels=y)
    model.config.update(dict.fromkeys(POSTHOC))
    torch.manual_seed(2)
    train_plain = model(x, labels=y)
    assert torch.equal(train_adjusted.loss, train_plain.loss) and torch.equal(train_adjusted.logits, train_plain.logits)


@pytest.mark.parametrize("kind", ["livt", "deit_lt"])
def test_posthoc_values_survive_save_and_reload(kind, tmp_path):
    torch.manual_seed(0)
    if kind == "livt":
        model = ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, **POSTHOC)).eval()
    else:
        model = ml.DeiTLTForImageClassification(ml.DeiTLTConfig(**DEIT_TINY, class_counts=COUNTS, **POSTHOC)).eval()
    x = _pixels()
    reference = model(x).logits
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert {k: saved[k] for k in POSTHOC} == POSTHOC
    assert (tmp_path / "posthoc_adjustment.py").exists()  # the code applying them travels with the model
    reloaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert torch.equal(reloaded(x).logits, reference)
    # a folder saved before the post-hoc fields existed loads as unadjusted
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k not in POSTHOC}))
    old = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert all(getattr(old.config, k) is None for k in POSTHOC)
    reloaded.config.update(dict.fromkeys(POSTHOC))
    assert torch.equal(old(x).logits, reloaded(x).logits)


def test_remote_code_and_pipeline_apply_posthoc_without_our_package(tmp_path):
    """A user with only transformers: AutoModel and pipeline(trust_remote_code) give the adjusted logits."""
    from PIL import Image

    from modeling_livt.data.transforms import EvalTransform, build_image_processor

    torch.manual_seed(0)
    model = ml.DeiTLTForImageClassification(ml.DeiTLTConfig(**DEIT_TINY, class_counts=COUNTS, **POSTHOC)).eval()
    processor = build_image_processor(32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    images = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8)) for i in range(2)]
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
    transform = EvalTransform(processor)
    x = torch.stack([transform(image) for image in images])
    logits = model(x).logits.detach()
    torch.save({"x": x, "logits": logits, "probs": logits.softmax(-1)}, tmp_path / "ref.pt")
    script = textwrap.dedent(f"""
        import torch
        from transformers import AutoModelForImageClassification, pipeline
        folder = {str(tmp_path / 'model')!r}
        m = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        assert type(m).__module__.startswith('transformers_modules'), type(m).__module__
        assert m.config.posthoc_temperature == 1.7
        ref = torch.load({str(tmp_path / 'ref.pt')!r})
        out = m(ref['x'])
        assert torch.equal(out.logits, ref['logits']), (out.logits - ref['logits']).abs().max()
        classify = pipeline('image-classification', model=folder, trust_remote_code=True, top_k=4)
        for i in range(2):
            scores = {{p['label']: p['score'] for p in classify({str(tmp_path)!r} + f'/{{i}}.png')}}
            for c in range(4):
                assert abs(scores[m.config.id2label[c]] - ref['probs'][i, c].item()) < 1e-5, (scores, ref['probs'][i])
        print('REMOTE_OK')
    """)
    result = run_without_our_package(script, tmp_path)
    assert "REMOTE_OK" in result.stdout, result.stderr[-3000:]
