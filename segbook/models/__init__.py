"""Models of the book. Each module follows torchvision's layout: blocks, the model, then builders."""
from .efficientnet import (
    B0_STAGES, SMALL_STAGES, CompoundScaling, EfficientNet, MBConv, StageSpec, compound_scaling,
    efficientnet_scaling_table, efficientnet_small, round_filters, round_repeats,
)
from .inception import Inception, InceptionAux, InceptionConfig, GoogLeNet, googlenet_small, inception_3a, without_reductions
from .resnet import (
    BasicBlock, Bottleneck, CifarResNet, PadShortcut, cifar_resnet, he_init, plain8, plain14, plain20, plain32,
    plain44, plain56, plain110, resnet8, resnet14, resnet20, resnet32, resnet44, resnet56, resnet110, se_resnet20,
)
from .densenet import DenseBlock, DenseLayer, DenseNet, Transition, count_dense_connections, densenet_bc
from .deformable_demo import (
    BLOB_PAIR_CLASSES, DeformDemoResult, TinyConvNet, blob_pair_batch, blob_pair_sample, train_deformable_demo,
)
from .fcn import FCN, FCNHead, MIN_INPUT_SIZE, ScoreLayer, VGGBackbone, fcn8s, fcn16s, fcn32s, patch_classifier, vgg_backbone
from .unet import (INPUT_POLICIES, UPSAMPLINGS, DoubleConv, UNet, UpBlock, center_crop, mirror_pad, predict_tiled,
                   unet, unet_paper)
from .. import sizes  # noqa: F401  (segbook.sizes: the shape arithmetic the U-Net checks rely on)
