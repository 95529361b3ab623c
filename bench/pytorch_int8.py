"""PyTorch's own int8 version of a lowbit digit model, for bench/vs-pytorch.ts (issue #4's comparison).

Cross-check only: not a dependency of lowbit or of its tests. Needs Debian's python3-torch and python3-onnx
(/usr/bin/python3). Rebuilds the ONNX chain (Conv, BatchNormalization, Relu, MaxPool, GlobalAveragePool,
Flatten, Gemm) as a torch.nn.Sequential with the same weights, checks it against the ONNX outputs given by
the caller, quantizes it with PyTorch's FX graph mode (static, per-channel weights, the onednn engine of
Debian's build), and times fp32 vs int8 at the given batch sizes in alternating blocks.

Usage: python3 bench/pytorch_int8.py MODEL.onnx CALIB.npy EVAL.npy LABELS.npy REF_LOGITS.npy [--threads 2] [--runs 20]
Prints one JSON object.
"""
import json
import statistics
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn as nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def build(path):
    m = onnx.load(path)
    w = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    layers = []
    for n in m.graph.node:
        a = attrs(n)
        if n.op_type == 'Conv':
            weight = w[n.input[1]]
            pads = a.get('pads', [0, 0, 0, 0])
            if pads[:2] != pads[2:]:
                raise SystemExit(f'asymmetric pads in {n.name}')
            conv = nn.Conv2d(weight.shape[1] * a.get('group', 1), weight.shape[0], tuple(weight.shape[2:]),
                             stride=tuple(a.get('strides', [1, 1])), padding=tuple(pads[:2]),
                             dilation=tuple(a.get('dilations', [1, 1])), groups=a.get('group', 1),
                             bias=len(n.input) > 2)
            conv.weight.data = weight
            if len(n.input) > 2:
                conv.bias.data = w[n.input[2]]
            layers.append(conv)
        elif n.op_type == 'BatchNormalization':
            bn = nn.BatchNorm2d(w[n.input[1]].shape[0], eps=a.get('epsilon', 1e-5))
            bn.weight.data, bn.bias.data = w[n.input[1]], w[n.input[2]]
            bn.running_mean.data, bn.running_var.data = w[n.input[3]], w[n.input[4]]
            layers.append(bn)
        elif n.op_type == 'Relu':
            layers.append(nn.ReLU())
        elif n.op_type == 'MaxPool':
            pads = a.get('pads', [0, 0, 0, 0])
            layers.append(nn.MaxPool2d(tuple(a['kernel_shape']), stride=tuple(a.get('strides', a['kernel_shape'])), padding=tuple(pads[:2])))
        elif n.op_type == 'GlobalAveragePool':
            layers.append(nn.AdaptiveAvgPool2d(1))
        elif n.op_type == 'Flatten':
            layers.append(nn.Flatten(a.get('axis', 1)))
        elif n.op_type == 'Gemm':
            weight = w[n.input[1]]
            if not a.get('transB', 0):
                weight = weight.t().contiguous()
            lin = nn.Linear(weight.shape[1], weight.shape[0])
            lin.weight.data = weight * a.get('alpha', 1.0)
            lin.bias.data = w[n.input[2]] * a.get('beta', 1.0)
            layers.append(lin)
        else:
            raise SystemExit(f'op {n.op_type} ({n.name}) is not in this converter')
    return nn.Sequential(*layers).eval()


def time_blocks(models, x, runs, rounds=5):
    times = [[] for _ in models]
    with torch.inference_mode():
        for r in range(rounds):
            for j in range(len(models)):
                k = (j + r) % len(models)
                for i in range(runs + 2):
                    t0 = time.perf_counter()
                    models[k](x)
                    if i >= 2:
                        times[k].append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


def main():
    args = sys.argv[1:]
    threads = int(args[args.index('--threads') + 1]) if '--threads' in args else 2
    runs = int(args[args.index('--runs') + 1]) if '--runs' in args else 20
    model_path, calib_path, eval_path, labels_path, ref_path = args[:5]
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = 'onednn'
    calib = torch.from_numpy(np.load(calib_path))
    evalx = torch.from_numpy(np.load(eval_path))
    labels = np.load(labels_path)
    ref = np.load(ref_path)

    fp32 = build(model_path)
    with torch.inference_mode():
        out = fp32(evalx).numpy()
    conversion_max_abs = float(np.abs(out - ref).max())

    prepared = prepare_fx(build(model_path), get_default_qconfig_mapping('onednn'), example_inputs=(calib[:1],))
    with torch.inference_mode():
        for i in range(0, calib.shape[0], 64):
            prepared(calib[i:i + 64])
    int8 = convert_fx(prepared)
    with torch.inference_mode():
        acc_f = float((fp32(evalx).argmax(1).numpy() == labels).mean())
        acc_q = float((int8(evalx).argmax(1).numpy() == labels).mean())

    lat = {}
    for b in (1, 32):
        x = evalx[:b].contiguous()
        f, q = time_blocks([fp32, int8], x, runs if b == 1 else max(4, runs // 4))
        lat[str(b)] = {'fp32_ms': f, 'int8_ms': q, 'speedup': f / q}
    print(json.dumps({
        'torch': torch.__version__, 'engine': torch.backends.quantized.engine, 'threads': threads,
        'conversion_max_abs': conversion_max_abs, 'accuracy': {'fp32': acc_f, 'int8': acc_q}, 'latency': lat,
    }))


if __name__ == '__main__':
    main()
