"""Building blocks, one concern per module (timm ``layers/`` style)."""
from .conv import ConvBNAct, make_divisible, same_padding

__all__ = ["ConvBNAct", "make_divisible", "same_padding"]
from .squeeze_excite import SqueezeExcite, se_hidden_channels, squeeze_excite
from .deform import DeformConv2d, regular_grid, sampling_points

__all__ += ["SqueezeExcite", "se_hidden_channels", "squeeze_excite", "DeformConv2d", "regular_grid", "sampling_points"]
from .convert import ConvolutionalizedNet, convolutionalize, fc_to_conv, linear_to_conv1x1
from .upsample import BilinearConvTranspose2d, bilinear_filter, bilinear_kernel, bilinear_upsample, upsample_params

__all__ += [
    "ConvolutionalizedNet", "convolutionalize", "fc_to_conv", "linear_to_conv1x1",
    "BilinearConvTranspose2d", "bilinear_filter", "bilinear_kernel", "bilinear_upsample", "upsample_params",
]
from .atrous import atrous_conv, dilated_stack, effective_kernel_size, tap_counts
from .separable import (
    SeparableConv2d, conv_macs, conv_params, separable_conv_bn_act, separable_conv_macs, separable_conv_params,
    separable_cost_ratio,
)

__all__ += [
    "atrous_conv", "dilated_stack", "effective_kernel_size", "tap_counts",
    "SeparableConv2d", "conv_macs", "conv_params", "separable_conv_bn_act", "separable_conv_macs",
    "separable_conv_params", "separable_cost_ratio",
]
