#!/usr/bin/env python
"""Hash-grid field throughput: queries per second of the encoding alone, and of the fused
encoding + MLP, forward and forward+backward, against the same network in plain torch (the
vectorised twins, measured in the same run).

Network: tiny-cuda-nn's NeRF density net: 3D hash grid (16 levels x 2 features, 2^19 entries,
base 16, scale 1.447) + 64-wide MLP with one hidden layer and 16 outputs.
Writes bench/results/fields-<device>.json.

    python bench/fields.py                      # 2^18 points
    python bench/fields.py --points 1048576 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from common import frame_times, header, results_dir, write_result

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", type=int, default=1 << 18)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--levels", type=int, default=16, help="hash-grid levels (16: tiny-cuda-nn's NeRF net)")
    p.add_argument("--log2-hashmap-size", type=int, default=19)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    args = p.parse_args(argv)

    import torch

    from splat.fields import HashGridMLP
    from splat.fields.fused import mlp_torch
    from splat.fields.hash_grid import hash_encode_torch

    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gen = torch.Generator().manual_seed(0)
    net = HashGridMLP(
        16,
        n_hidden_layers=1,
        n_input_dims=3,
        n_levels=args.levels,
        n_features_per_level=2,
        log2_hashmap_size=args.log2_hashmap_size,
        base_resolution=16,
        per_level_scale=1.447269237440378,
        generator=gen,
    ).to(dev)
    with torch.no_grad():
        for t in net.encoding.embeddings:
            t.uniform_(-0.1, 0.1)
    x = torch.rand((args.points, 3), generator=gen).to(dev)
    up = torch.randn((args.points, 16), generator=gen).to(dev)
    tables = list(net.encoding.embeddings)
    layout = net.encoding.layout

    def fused(x):
        net.fused = True
        return net(x)

    def unfused(x):
        net.fused = False
        return net(x)

    def torch_net(x):
        return mlp_torch(hash_encode_torch(x, tables, layout), net.w_in, net.w_hidden, net.w_out)

    cases = {
        "encoding forward": (lambda: net.encoding(x), lambda: hash_encode_torch(x, tables, layout)),
        "encoding forward+backward": (
            lambda: (net.encoding(x) * up[:, :1]).sum().backward(),
            lambda: (hash_encode_torch(x, tables, layout) * up[:, :1]).sum().backward(),
        ),
        "encoding+MLP fused forward": (lambda: fused(x), lambda: torch_net(x)),
        "encoding+MLP fused forward+backward": (
            lambda: (fused(x) * up).sum().backward(),
            lambda: (torch_net(x) * up).sum().backward(),
        ),
        "encoding kernel + torch MLP forward": (lambda: unfused(x), lambda: torch_net(x)),
        "encoding kernel + torch MLP fwd+bwd": (
            lambda: (unfused(x) * up).sum().backward(),
            lambda: (torch_net(x) * up).sum().backward(),
        ),
    }
    rows = []
    for name, (ours, peer) in cases.items():
        grad = "backward" in name or "bwd" in name
        with torch.set_grad_enabled(grad):
            t_ours = statistics.median(frame_times(lambda k, f=ours: f(), args.repeats, dev))
            t_peer = statistics.median(frame_times(lambda k, f=peer: f(), max(2, args.repeats // 2), dev))
        net.zero_grad(set_to_none=True)
        rows.append(
            {
                "case": name,
                "points": args.points,
                "ms": 1000 * t_ours,
                "queries_per_s": args.points / t_ours,
                "torch_ms": 1000 * t_peer,
                "torch_queries_per_s": args.points / t_peer,
                "speedup": t_peer / t_ours,
            }
        )
        print(
            f"{name:37s} {1000 * t_ours:9.1f} ms ({args.points / t_ours / 1e6:6.2f} M q/s)   "
            f"torch {1000 * t_peer:9.1f} ms   "
            f"x{t_peer / t_ours:5.2f}",
            flush=True,
        )
    path = write_result(
        results_dir() / f"fields-{dev.type}.json",
        {
            **header("fields", dev.type),
            "network": f"3D hash grid L={args.levels} F=2 T=2^{args.log2_hashmap_size} base 16 scale 1.447 "
            "+ MLP 64x1 hidden, 16 out",
            "results": rows,
            "notes": "median times; torch peer = the same network evaluated by the vectorised pure-torch twins; "
            '"fused" = one Warp kernel each way, "encoding kernel + torch MLP" = the CPU default',
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
