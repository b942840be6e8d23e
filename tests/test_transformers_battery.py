"""transformers' own model test battery, run against our four model classes.

`ModelTesterMixin` (tests/test_modeling_common.py) and `ConfigTester` (tests/test_configuration_common.py) come from the
source distribution of the installed transformers version, fetched once per machine from the package registry
(`tests/transformers_battery_setup.py`); offline, the module skips. The testers below are written the way
transformers' own ViT / DeiT / ViTMAE / ResNet testers are (tiny configs, `prepare_config_and_inputs_for_common`), and
each test class carries only the skips, attributes and overrides transformers' own test class of the closest built-in
model carries (ViT for the LiVT classifier, ViTMAE for MGP, DeiT for DeiT-LT, ResNet for the CIFAR ResNet). Two
battery tests are adapted where our classifiers refuse on purpose what they ask (`_ClassifierTests`: regression, a
balanced loss over one class, a class prior of the wrong length); the refusals are asserted. ViTMAE's skips of the
determinism / batching / output-equivalence checks (random masks) are not needed: the MGP inputs carry `noise`.

Our model types are not built into transformers, so the battery's checks that look classes up in transformers' static
name tables (`MODEL_MAPPING_NAMES`: a base model, `MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES`: gets `labels`, ...)
would not know them: each test adds our types to those tables for its own duration (`_register_model_names`), as
they would read if the models were built in.
"""

import inspect
import unittest
import warnings
from unittest import mock

import pytest
import torch
from torch import nn
from transformers.models.auto import modeling_auto
from transformers.testing_utils import torch_device

import modeling_livt as ml
from tests.transformers_battery_setup import BatteryUnavailable, load_battery

try:
    _common, _configuration = load_battery()
except BatteryUnavailable as error:
    pytest.skip(f"transformers' model test battery is unavailable: {error}", allow_module_level=True)

ModelTesterMixin = _common.ModelTesterMixin
floats_tensor = _common.floats_tensor
ids_tensor = _common.ids_tensor
ConfigTester = _configuration.ConfigTester

# what transformers' name tables would hold if our model types were built in (model_type -> class name)
MODEL_NAMES = {
    "MODEL_MAPPING_NAMES": {"livt": "LiVTModel", "deit_lt": "DeiTLTModel"},
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES": {
        "livt": "LiVTForImageClassification",
        "deit_lt": "DeiTLTForImageClassification",
        "resnet_cifar": "ResNetCifarForImageClassification",
    },
    "MODEL_FOR_PRETRAINING_MAPPING_NAMES": {"livt": "LiVTForMaskedImageModeling"},
}

# a long-tailed prior for the balanced losses (LiVT's default loss is Bal-BCE)
NUM_LABELS = 10
CLASS_COUNTS = [max(1, int(100 * 0.6**i)) for i in range(NUM_LABELS)]


class _BatteryTestCase(ModelTesterMixin):
    """What all four test classes share: our names in transformers' tables during each test, and
    `test_can_init_all_missing_weights` on (the battery runs it by default only for models whose files carry a
    `# Copyright 2023` or later header; ours carry none)."""

    test_can_init_all_missing_weights_before_2023 = True

    def _register_model_names(self):
        for table, names in MODEL_NAMES.items():  # the battery imported these very dicts from modeling_auto
            patcher = mock.patch.dict(getattr(modeling_auto, table), names)
            patcher.start()
            self.addCleanup(patcher.stop)


# ---------------------------------------------------------------------------------------------------------------------
# Testers
# ---------------------------------------------------------------------------------------------------------------------
class LongTailViTModelTester:
    """A tiny LiVT / DeiT-LT encoder: 32-px images, 8-px patches (16 patches), width 32, 2 layers, 2 heads."""

    config_class = ml.LiVTConfig
    num_prefix_tokens = 1

    def __init__(
        self,
        parent,
        batch_size=5,
        image_size=32,
        patch_size=8,
        num_channels=3,
        is_training=True,
        use_labels=True,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        type_sequence_label_size=NUM_LABELS,
        initializer_range=0.02,
        class_counts=CLASS_COUNTS,
        attn_implementation="eager",
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.is_training = is_training
        self.use_labels = use_labels
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.intermediate_size = intermediate_size
        self.hidden_act = hidden_act
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.type_sequence_label_size = type_sequence_label_size
        self.initializer_range = initializer_range
        self.class_counts = class_counts
        self.attn_implementation = attn_implementation
        self.num_patches = (image_size // patch_size) ** 2
        # the sequence: the prefix tokens ([CLS], or [CLS, DIST] for DeiT-LT) and the patches
        self.seq_length = self.num_patches + self.num_prefix_tokens

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.type_sequence_label_size) if self.use_labels else None
        return self.get_config(), pixel_values, labels

    def config_kwargs(self):
        return dict(
            image_size=self.image_size,
            patch_size=self.patch_size,
            num_channels=self.num_channels,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act=self.hidden_act,
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=self.attention_probs_dropout_prob,
            initializer_range=self.initializer_range,
            class_counts=self.class_counts,
            attn_implementation=self.attn_implementation,
        )

    def get_config(self):
        return self.config_class(**self.config_kwargs())

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


class LiVTModelTester(LongTailViTModelTester):
    def create_and_check_model(self, config, pixel_values, labels):
        model = ml.LiVTModel(config).to(torch_device).eval()
        result = model(pixel_values)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = ml.LiVTForImageClassification(config).to(torch_device).eval()
        result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))
        self.parent.assertTrue(torch.isfinite(result.loss))

        # greyscale images
        config.num_channels = 1
        model = ml.LiVTForImageClassification(config).to(torch_device).eval()
        pixel_values = floats_tensor([self.batch_size, 1, self.image_size, self.image_size])
        result = model(pixel_values)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.type_sequence_label_size))


class LiVTForMaskedImageModelingTester(LongTailViTModelTester):
    """MGP with a tiny decoder (width 32, 2 layers, 2 heads) and mask ratio 0.5. The inputs carry `noise` (as the
    battery gives Hiera's pre-training model): MAE's random masking is then a function of the inputs, so the
    determinism, batching and save/load checks compare like with like."""

    def __init__(self, parent, mask_ratio=0.5, **kwargs):
        super().__init__(parent, **kwargs)
        self.mask_ratio = mask_ratio
        # the encoder sees [CLS] and the kept patches
        self.seq_length = 1 + int(self.num_patches * (1 - mask_ratio))

    def config_kwargs(self):
        return dict(
            super().config_kwargs(),
            decoder_hidden_size=self.hidden_size,
            decoder_num_hidden_layers=self.num_hidden_layers,
            decoder_num_attention_heads=self.num_attention_heads,
            decoder_intermediate_size=self.intermediate_size,
            mask_ratio=self.mask_ratio,
        )

    def prepare_config_and_inputs_for_common(self):
        config, inputs_dict = super().prepare_config_and_inputs_for_common()
        inputs_dict["noise"] = floats_tensor([self.batch_size, self.num_patches])
        return config, inputs_dict

    def create_and_check_for_pretraining(self, config, pixel_values, labels):
        model = ml.LiVTForMaskedImageModeling(config).to(torch_device).eval()
        result = model(pixel_values)
        expected_num_channels = self.patch_size**2 * self.num_channels
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_patches, expected_num_channels))
        self.parent.assertEqual(result.mask.shape, (self.batch_size, self.num_patches))
        self.parent.assertEqual(int(result.mask[0].sum()), self.num_patches - (self.seq_length - 1))

        # greyscale images
        config.num_channels = 1
        model = ml.LiVTForMaskedImageModeling(config).to(torch_device).eval()
        pixel_values = floats_tensor([self.batch_size, 1, self.image_size, self.image_size])
        result = model(pixel_values)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_patches, self.patch_size**2))


class DeiTLTModelTester(LongTailViTModelTester):
    config_class = ml.DeiTLTConfig
    num_prefix_tokens = 2

    def create_and_check_model(self, config, pixel_values, labels):
        model = ml.DeiTLTModel(config).to(torch_device).eval()
        result = model(pixel_values)
        self.parent.assertEqual(result.last_hidden_state.shape, (self.batch_size, self.seq_length, self.hidden_size))

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = ml.DeiTLTForImageClassification(config).to(torch_device).eval()
        result = model(pixel_values, labels=labels)
        shape = (self.batch_size, self.type_sequence_label_size)
        for name in ("logits", "cls_logits", "distillation_logits"):
            self.parent.assertEqual(getattr(result, name).shape, shape)
        torch.testing.assert_close(result.logits, (result.cls_logits + result.distillation_logits) / 2)
        self.parent.assertTrue(torch.isfinite(result.loss))

        # greyscale images
        config.num_channels = 1
        model = ml.DeiTLTForImageClassification(config).to(torch_device).eval()
        pixel_values = floats_tensor([self.batch_size, 1, self.image_size, self.image_size])
        self.parent.assertEqual(model(pixel_values).logits.shape, shape)


class ResNetCifarModelTester:
    """A tiny CIFAR ResNet-8 (one BasicBlock per stage, widths 4 / 8 / 16) on 32-px images."""

    def __init__(
        self, parent, batch_size=3, image_size=32, num_channels=3, depth=8, base_width=4, is_training=True,
        use_labels=True, num_labels=3,
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.depth = depth
        self.base_width = base_width
        self.is_training = is_training
        self.use_labels = use_labels
        self.num_labels = num_labels
        self.num_stages = 3

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.num_labels) if self.use_labels else None
        return self.get_config(), pixel_values, labels

    def get_config(self):
        return ml.ResNetCifarConfig(
            depth=self.depth, num_channels=self.num_channels, base_width=self.base_width, num_labels=self.num_labels
        )

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = ml.ResNetCifarForImageClassification(config).to(torch_device).eval()
        result = model(pixel_values, labels=labels)
        self.parent.assertEqual(result.logits.shape, (self.batch_size, self.num_labels))
        self.parent.assertTrue(torch.isfinite(result.loss))

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}


# ---------------------------------------------------------------------------------------------------------------------
# Test classes
# ---------------------------------------------------------------------------------------------------------------------
class _ClassifierTests:
    """The battery's classifier checks, adapted where our classifiers refuse on purpose what it asks.

    `test_problem_types`: the battery's multi-label, single-label and regression runs, except that our classifiers
    refuse `problem_type="regression"` (a ValueError naming `problem_type`: they are classifiers) and a balanced loss
    (LiVT's default Bal-BCE) over a single class (a ValueError: a class prior of 1 has no bias). Those two refusals are
    asserted instead of trained through; the class prior follows `num_labels`.

    `test_can_load_ignoring_mismatched_shapes`: the battery re-heads the config in place (`config.num_labels = 3`),
    which a class prior of the old length (`class_counts`, 10 entries) refuses with a ValueError naming both lengths,
    so it runs without one (re-heading with a prior is `from_pretrained(dir, num_labels=K, class_counts=...)`).
    """

    def test_problem_types(self):
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        problem_types = [
            {"title": "multi_label_classification", "num_labels": 2, "dtype": torch.float},
            {"title": "single_label_classification", "num_labels": 1, "dtype": torch.long},
            {"title": "regression", "num_labels": 1, "dtype": torch.float},
        ]
        for model_class in self.all_model_classes:
            if model_class.__name__ not in MODEL_NAMES["MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES"].values():
                continue
            for problem_type in problem_types:
                with self.subTest(msg=f"Testing {model_class} with {problem_type['title']}"):
                    config.problem_type = problem_type["title"]
                    config.num_labels = problem_type["num_labels"]
                    if getattr(config, "class_counts", None) is not None:
                        config.class_counts = CLASS_COUNTS[: problem_type["num_labels"]]
                    loss_type = getattr(config, config.loss_field) if hasattr(config, "loss_field") else "ce"
                    if problem_type["title"] == "regression":
                        with self.assertRaisesRegex(ValueError, "problem_type='regression' is not supported"):
                            model_class(config)
                        continue
                    model = model_class(config)
                    model.to(torch_device)
                    model.train()
                    inputs = self._prepare_for_class(inputs_dict, model_class, return_labels=True)
                    if problem_type["num_labels"] > 1:
                        inputs["labels"] = inputs["labels"].unsqueeze(1).repeat(1, problem_type["num_labels"])
                    inputs["labels"] = inputs["labels"].to(problem_type["dtype"])
                    if problem_type["num_labels"] == 1 and loss_type.startswith("bal_"):
                        with self.assertRaisesRegex(ValueError, "at least two classes"):
                            model(**inputs)
                        continue
                    with warnings.catch_warnings(record=True) as warning_list:
                        loss = model(**inputs).loss
                    for w in warning_list:
                        if "Using a target size that is different to the input size" in str(w.message):
                            raise ValueError(f"Something is going wrong: intercepted {w.message}")
                    loss.backward()
        config.problem_type = None

    def test_can_load_ignoring_mismatched_shapes(self):
        with mock.patch.object(self.model_tester, "class_counts", None, create=True):
            super().test_can_load_ignoring_mismatched_shapes()


class _ViTLikeTests(_BatteryTestCase):
    """ViT's / DeiT's / ViTMAE's own overrides (transformers' tests/models/vit/test_modeling_vit.py and kin)."""

    test_resize_embeddings = False
    test_torch_exportable = True

    def setUp(self):
        self._register_model_names()

    def test_config(self):
        self.config_tester.run_common_tests()

    @unittest.skip(reason="ViT-like models do not use inputs_embeds")
    def test_inputs_embeds(self):
        pass

    def test_model_get_set_embeddings(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            model = model_class(config)
            self.assertIsInstance(model.get_input_embeddings(), nn.Module)
            x = model.get_output_embeddings()
            self.assertTrue(x is None or isinstance(x, nn.Linear))


class LiVTForImageClassificationTest(_ClassifierTests, _ViTLikeTests, unittest.TestCase):
    """LiVT stage 2 and its encoder: transformers' ViT test class (`ViTModelTest`)."""

    all_model_classes = (ml.LiVTModel, ml.LiVTForImageClassification)

    def setUp(self):
        super().setUp()
        self.model_tester = LiVTModelTester(self)
        # transformers' ViT test passes hidden_size=37; ours must divide by the default 12 heads (and 4, sin-cos)
        self.config_tester = ConfigTester(self, config_class=ml.LiVTConfig, has_text_modality=False, hidden_size=36)

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())


class LiVTForMaskedImageModelingTest(_ViTLikeTests, unittest.TestCase):
    """LiVT stage 1 (MGP = MAE): transformers' ViTMAE test class (`ViTMAEModelTest`)."""

    all_model_classes = (ml.LiVTForMaskedImageModeling,)

    def setUp(self):
        super().setUp()
        self.model_tester = LiVTForMaskedImageModelingTester(self)
        self.config_tester = ConfigTester(self, config_class=ml.LiVTConfig, has_text_modality=False, hidden_size=36)

    def test_for_pretraining(self):
        self.model_tester.create_and_check_for_pretraining(*self.model_tester.prepare_config_and_inputs())


class DeiTLTForImageClassificationTest(_ClassifierTests, _ViTLikeTests, unittest.TestCase):
    """DeiT-LT and its encoder: transformers' DeiT test class (`DeiTModelTest`)."""

    all_model_classes = (ml.DeiTLTModel, ml.DeiTLTForImageClassification)

    def setUp(self):
        super().setUp()
        self.model_tester = DeiTLTModelTester(self)
        self.config_tester = ConfigTester(self, config_class=ml.DeiTLTConfig, has_text_modality=False, hidden_size=36)

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())


class ResNetCifarForImageClassificationTest(_ClassifierTests, _BatteryTestCase, unittest.TestCase):
    """The CIFAR ResNet teacher: transformers' ResNet test class (`ResNetModelTest`)."""

    all_model_classes = (ml.ResNetCifarForImageClassification,)
    test_resize_embeddings = False
    has_attentions = False

    def setUp(self):
        self._register_model_names()
        self.model_tester = ResNetCifarModelTester(self)
        self.config_tester = ConfigTester(self, config_class=ml.ResNetCifarConfig, has_text_modality=False)

    def test_config(self):
        # transformers' ResNet test runs these (a ResNet config has no hidden_size / num_attention_heads)
        self.config_tester.create_and_test_config_to_json_string()
        self.config_tester.create_and_test_config_to_json_file()
        self.config_tester.create_and_test_config_from_and_save_pretrained()
        self.config_tester.create_and_test_config_with_num_labels()
        self.config_tester.check_config_can_be_init_without_params()
        self.config_tester.check_config_arguments_init()

    @unittest.skip(reason="ResNet does not use inputs_embeds")
    def test_inputs_embeds(self):
        pass

    @unittest.skip(reason="ResNet does not support input and output embeddings")
    def test_model_get_set_embeddings(self):
        pass

    @unittest.skip(reason="ResNet does not use feedforward chunking")
    def test_feed_forward_chunking(self):
        pass

    def test_forward_signature(self):
        config, _ = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            arg_names = [*inspect.signature(model_class(config).forward).parameters.keys()]
            self.assertListEqual(arg_names[:1], ["pixel_values"])

    def test_hidden_states_output(self):
        """transformers' ResNet override: feature maps `[N, C, H, W]`, the stem's and each stage's."""

        def check_hidden_states_output(inputs_dict, config, model_class):
            model = model_class(config).to(torch_device).eval()
            with torch.no_grad():
                outputs = model(**self._prepare_for_class(inputs_dict, model_class))
            hidden_states = outputs.hidden_states
            self.assertEqual(len(hidden_states), self.model_tester.num_stages + 1)
            # the CIFAR stem keeps the full resolution (transformers' ImageNet ResNet divides it by 4)
            size = self.model_tester.image_size
            self.assertListEqual(list(hidden_states[0].shape[-2:]), [size, size])
            self.assertListEqual(list(hidden_states[-1].shape[-2:]), [size // 4, size // 4])

        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        for model_class in self.all_model_classes:
            inputs_dict["output_hidden_states"] = True
            check_hidden_states_output(inputs_dict, config, model_class)
            del inputs_dict["output_hidden_states"]
            config.output_hidden_states = True
            check_hidden_states_output(inputs_dict, config, model_class)

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

