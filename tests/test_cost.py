"""nasjax.nn.cost: FLOPs = 2 x multiply-adds of convolutions and dense layers, checked against a
hand count of each space's network (written from the papers' descriptions, not from the modules),
for other class counts and input sizes too."""

import jax
import jax.numpy as jnp
import pytest

from nasjax.nn import build, cost
from nasjax.spaces import ConvNetSpace, DARTSSpace, NASBench101Space, NASBench201Space
from nasjax.train import TrainConfig
from nasjax.train.population import arch_info


def counted(module, image_shape):
    x = jnp.zeros((1, *image_shape))
    shapes = jax.eval_shape(lambda: module.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x))
    return cost.multiply_adds(module, shapes, image_shape)


@pytest.mark.parametrize("image_shape, num_classes", [((32, 32, 3), 10), ((16, 16, 3), 120)])
def test_convnet(image_shape, num_classes):
    space = ConvNetSpace.motivating()
    enc = space.encode([(32, 3), (64, 5), (32, 3)])  # pools after the second layer
    h = image_shape[0]
    hand = (h * h * 3 * 3 * 3 * 32 + h * h * 5 * 5 * 32 * 64 + (h // 2) ** 2 * 3 * 3 * 64 * 32
            + 32 * num_classes)
    assert counted(build(space, enc, num_classes=num_classes), image_shape) == hand
    _, flops = arch_info(space, enc, TrainConfig(), num_classes, image_shape)
    assert flops == 2.0 * hand


@pytest.mark.parametrize("image_shape, num_classes, c, n", [((32, 32, 3), 10, 16, 5),
                                                         ((16, 16, 3), 120, 8, 1)])
def test_nasbench201(image_shape, num_classes, c, n):
    space = NASBench201Space()
    cell = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    enc = space.from_string(cell)
    h = image_shape[0]
    hand = h * h * 9 * 3 * c  # stem
    for stage in range(3):
        hw, ch = (h >> stage) ** 2, c << stage
        if stage:  # ResNet block: 3x3 stride 2, 3x3, 1x1 shortcut, all at the new resolution
            hand += hw * 9 * (ch // 2) * ch + hw * 9 * ch * ch + hw * (ch // 2) * ch
        hand += n * hw * ch * ch * (9 + 1 + 9)  # n cells: two 3x3 edges and one 1x1 edge
    hand += 4 * c * num_classes
    module = build(space, enc, num_classes=num_classes, channels=c, cells_per_stage=n)
    assert counted(module, image_shape) == hand
    # NAS-Bench-201 reports the cells of no convolution at 7.78M "FLOPs" (multiply-adds) on CIFAR-10.
    empty = space.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert counted(build(space, empty), (32, 32, 3)) == 7_783_040


def test_nasbench101():
    space = NASBench101Space()
    # input -> conv3x3 -> maxpool3x3 -> output, plus input -> output.
    matrix = [[0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]
    enc = space.encode(matrix, ["input", "conv3x3-bn-relu", "maxpool3x3", "output"])
    hand, c_in, h = 32 * 32 * 9 * 3 * 128, 128, 32  # stem conv3x3-128
    for stack in range(3):
        c = 128 << stack
        h = 32 >> stack
        for _ in range(3):
            # The output's only inner input is the pool, so both inner vertices get c channels:
            # projection 1x1 c_in -> c, conv3x3 c -> c, and the input -> output projection 1x1.
            hand += h * h * (c_in * c + 9 * c * c + c_in * c)
            c_in = c
    hand += 512 * 10
    assert counted(build(space, enc), (32, 32, 3)) == hand


def test_darts():
    space = DARTSSpace()
    normal = [("sep_conv_3x3", 0), ("dil_conv_5x5", 1), ("skip_connect", 0), ("sep_conv_5x5", 2),
              ("avg_pool_3x3", 1), ("dil_conv_3x3", 3), ("max_pool_3x3", 0), ("skip_connect", 4)]
    reduce = [("max_pool_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 1), ("sep_conv_3x3", 2),
              ("avg_pool_3x3", 0), ("max_pool_3x3", 3), ("skip_connect", 2), ("max_pool_3x3", 4)]
    enc = space.from_genotype(normal, [2, 3, 4, 5], reduce, [2, 3, 4, 5])
    c0, layers, classes = 8, 5, 10

    def sep(k, c, hw):  # SepConv: two (depthwise k x k, pointwise 1x1) halves
        return 2 * (k * k * c * hw + c * c * hw)

    def dil(k, c, hw):  # DilConv: one (depthwise k x k, pointwise 1x1)
        return k * k * c * hw + c * c * hw

    h = 32
    hand = h * h * 9 * 3 * (3 * c0)  # stem conv3x3 -> 3 c0
    c_pp, c_p, c = 3 * c0, 3 * c0, c0
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        c = 2 * c if reduction else c
        # Both preprocessings output this cell's c channels at its input's resolution h: a 1x1 conv,
        # or after a reduction, a FactorizedReduce of the input two cells back (twice the
        # resolution): two 1x1 stride-2 convs to c / 2 each, the same multiply-adds.
        hand += h * h * c_pp * c + h * h * c_p * c
        if reduction:
            h //= 2  # the edges on the inputs have stride 2
            # skip_connect on input 1 with stride 2 is a FactorizedReduce c -> c; sep_conv_3x3 reads
            # node 0 at stride 1; pools and the identity cost nothing.
            hand += h * h * c * c + sep(3, c, h * h)
        else:
            hand += sep(3, c, h * h) + dil(5, c, h * h) + sep(5, c, h * h) + dil(3, c, h * h)
        c_pp, c_p = c_p, 4 * c  # the cell concatenates its 4 nodes
    hand += c_p * classes
    module = build(space, enc, num_classes=classes, init_channels=c0, layers=layers)
    assert counted(module, (32, 32, 3)) == hand
