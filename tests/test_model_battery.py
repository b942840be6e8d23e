"""The transformers conventions every model of the package keeps: `return_dict=False` gives the ModelOutput's
`to_tuple()` (loss first when present), and `config.problem_type` is honoured (multi-label BCE) or refused
(regression) by every head model."""

import pytest
import torch
import torch.nn.functional as F

import modeling_livt as ml
from tests.helpers import TINY, tiny_livt_config

COUNTS = [60, 30, 12, 5]
DEIT_TINY = {k: TINY[k] for k in ("image_size", "patch_size", "hidden_size", "num_hidden_layers",
                                  "num_attention_heads", "intermediate_size")}


def _livt_classifier(**overrides):
    return ml.LiVTForImageClassification(tiny_livt_config(class_counts=COUNTS, **overrides))


def _deit_lt_classifier(**overrides):
    return ml.DeiTLTForImageClassification(ml.DeiTLTConfig(**DEIT_TINY, class_counts=COUNTS, **overrides))


def _resnet_classifier(**overrides):
    return ml.ResNetCifarForImageClassification(ml.ResNetCifarConfig(depth=8, base_width=4, num_labels=4, **overrides))


CLASSIFIERS = {"livt": _livt_classifier, "deit_lt": _deit_lt_classifier, "resnet_cifar": _resnet_classifier}
MODELS = {
    **CLASSIFIERS,
    "livt_mgp": lambda **kw: ml.LiVTForMaskedImageModeling(tiny_livt_config(**kw)),
    "livt_encoder": lambda **kw: ml.LiVTModel(tiny_livt_config(**kw)),
    "deit_lt_encoder": lambda **kw: ml.DeiTLTModel(ml.DeiTLTConfig(**DEIT_TINY, num_labels=4, **kw)),
}


def _pixels(batch=3, seed=0):
    return torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _inputs(name, labels):
    inputs = {"pixel_values": _pixels()}
    if name == "livt_mgp":
        inputs["noise"] = torch.rand(3, 64, generator=torch.Generator().manual_seed(1))
    elif labels and name in CLASSIFIERS:
        inputs["labels"] = torch.tensor([0, 3, 1])
    return inputs


def _assert_same(got, expected):
    assert type(got) is type(expected) or (isinstance(got, tuple) and isinstance(expected, tuple))
    if isinstance(expected, tuple):
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            _assert_same(g, e)
    else:
        assert torch.equal(got, expected)


@pytest.mark.parametrize("labels", [False, True])
@pytest.mark.parametrize("extra", [{}, {"output_hidden_states": True}, {"output_hidden_states": True,
                                                                         "output_attentions": True}])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_return_dict_false_is_the_outputs_to_tuple(name, extra, labels):
    if name == "resnet_cifar" and "output_attentions" in extra:
        pytest.skip("a CNN has no attentions")
    torch.manual_seed(0)
    model = MODELS[name](**({"attn_implementation": "eager"} if "output_attentions" in extra else {})).eval()
    inputs = {**_inputs(name, labels), **extra}
    output = model(**inputs)
    expected = output.to_tuple()
    as_tuple = model(**inputs, return_dict=False)
    assert isinstance(as_tuple, tuple) and not hasattr(as_tuple, "keys")
    _assert_same(as_tuple, expected)
    if "loss" in output and output.loss is not None:
        assert torch.equal(as_tuple[0], output.loss)  # loss first, as transformers' heads
    if extra.get("output_hidden_states"):
        assert any(isinstance(e, tuple) for e in as_tuple)  # hidden_states travel as a nested tuple
    model.config.return_dict = False  # the config default is honoured too, and an argument overrides it
    _assert_same(model(**inputs), expected)
    assert not isinstance(model(**inputs, return_dict=True), tuple)


def test_return_dict_false_orders_the_fields():
    """(loss, logits, cls_logits, distillation_logits): the DeiT-LT output's field order."""
    model = _deit_lt_classifier().eval()
    loss, logits, cls_logits, distillation_logits = model(_pixels(), labels=torch.tensor([0, 3, 1]), return_dict=False)
    torch.testing.assert_close(logits, (cls_logits + distillation_logits) / 2)
    assert loss.ndim == 0
    logits_only = model(_pixels(), return_dict=False)
    assert len(logits_only) == 3 and torch.equal(logits_only[0], logits)


def _head_logits(name, output):
    """The logits each labels loss is computed on: DeiT-LT's two raw heads, the others' `logits`."""
    return [output.cls_logits, output.distillation_logits] if name == "deit_lt" else [output.logits]


MULTI_HOT = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_multi_label_problem_type_is_bce_with_logits_over_multi_hot_labels(name):
    model = CLASSIFIERS[name](problem_type="multi_label_classification").eval()
    out = model(_pixels(), labels=MULTI_HOT)
    heads = _head_logits(name, out)
    expected = sum(F.binary_cross_entropy_with_logits(h, MULTI_HOT) for h in heads) / len(heads)
    torch.testing.assert_close(out.loss, expected)
    # int multi-hot labels are cast, as BCEWithLogits needs float targets
    torch.testing.assert_close(model(_pixels(), labels=MULTI_HOT.long()).loss, expected)
    # before: the multi-hot rows were taken as soft targets of the configured loss; they give another value
    model.config.problem_type = None
    assert not torch.allclose(model(_pixels(), labels=MULTI_HOT).loss, expected)
    assert model.config.problem_type is None  # float labels never switch it (unlike transformers' own heads)
    model.config.problem_type = "multi_label_classification"
    with pytest.raises(ValueError, match="multi-hot targets"):
        model(_pixels(), labels=torch.tensor([0, 3, 1]))


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_single_label_problem_type_is_the_configured_loss(name):
    y = torch.tensor([0, 3, 1])
    plain = CLASSIFIERS[name]().eval()
    single = CLASSIFIERS[name](problem_type="single_label_classification").eval()
    single.load_state_dict(plain.state_dict())
    out, expected = single(_pixels(), labels=y), plain(_pixels(), labels=y)
    torch.testing.assert_close(out.loss, expected.loss)
    if name == "livt":
        torch.testing.assert_close(out.loss, ml.BalancedBCELoss(COUNTS)(out.logits, y))  # the long-tail loss


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_regression_problem_type_is_refused(name):
    with pytest.raises(ValueError, match=r"problem_type='regression' is not supported.*multi_label_classification"):
        CLASSIFIERS[name](problem_type="regression")
    model = CLASSIFIERS[name]().eval()
    model.config.problem_type = "regression"
    with pytest.raises(ValueError, match="problem_type='regression'"):
        model(_pixels(), labels=torch.tensor([0, 3, 1]))
