"""Models of the book. Each module follows torchvision's layout: blocks, the model, then builders.

Chapter experiments (toy tasks, training demos, chapter tables) live in :mod:`segbook.experiments`.
"""
from .efficientnet import (
    B0_STAGES, SMALL_STAGES, CompoundScaling, EfficientNet, MBConv, StageSpec, compound_scaling,
    efficientnet_small, scaled_efficientnet_small, round_filters, round_repeats,
)
from .inception import (Inception, InceptionAux, InceptionConfig, GoogLeNet, googlenet_small, inception_3a,
                        without_aux_heads, without_reductions, aux_classifier)
from .resnet import BasicBlock, Bottleneck, CifarResNet, PadShortcut, cifar_resnet, resnet20
from .densenet import DenseBlock, DenseLayer, DenseNet, Transition, count_dense_connections, densenet_bc
from .fcn import FCN, FCNHead, MIN_INPUT_SIZE, ScoreLayer, fcn8s, fcn16s, fcn32s, patch_classifier
from .unet import (INPUT_POLICIES, DoubleConv, UNet, UpBlock, center_crop, mirror_pad, predict_tiled,
                   unet, unet_paper)
from .backbones import (OUTPUT_STRIDES, VGG_MIN_INPUT_SIZE, ResNetBackbone, VGGBackbone, dilation_schedule,
                        resnet_backbone, vgg_backbone)
from .deeplab import ASPP, ASPPPooling, DeepLab, DeepLabV3PlusDecoder, aspp_rates, deeplabv3, deeplabv3plus

__all__ = [
    # efficientnet
    "B0_STAGES", "SMALL_STAGES", "CompoundScaling", "EfficientNet", "MBConv", "StageSpec", "compound_scaling",
    "efficientnet_small", "scaled_efficientnet_small", "round_filters", "round_repeats",
    # inception
    "Inception", "InceptionAux", "InceptionConfig", "GoogLeNet", "googlenet_small", "inception_3a",
    "without_aux_heads", "aux_classifier", "without_reductions",
    # resnet
    "BasicBlock", "Bottleneck", "CifarResNet", "PadShortcut", "cifar_resnet", "resnet20",
    # densenet
    "DenseBlock", "DenseLayer", "DenseNet", "Transition", "count_dense_connections", "densenet_bc",
    # fcn
    "FCN", "FCNHead", "MIN_INPUT_SIZE", "ScoreLayer", "fcn8s", "fcn16s", "fcn32s", "patch_classifier",
    # backbones, deeplab
    "OUTPUT_STRIDES", "VGG_MIN_INPUT_SIZE", "ResNetBackbone", "VGGBackbone", "dilation_schedule",
    "resnet_backbone", "vgg_backbone",
    "ASPP", "ASPPPooling", "DeepLab", "DeepLabV3PlusDecoder", "aspp_rates", "deeplabv3", "deeplabv3plus",
    # unet
    "INPUT_POLICIES", "DoubleConv", "UNet", "UpBlock", "center_crop", "mirror_pad", "predict_tiled",
    "unet", "unet_paper",
]
