#!/usr/bin/env python
"""Training-step throughput of our models against timm and transformers peers, in one process.

Every variant is one full training step (forward, loss, backward, AdamW step, `zero_grad(set_to_none=True)`) on the
same random batch, in the same dtype. Variants are timed round-robin (the order rotates every round) so that load
from other processes hits them alike; a ratio is the median over rounds of the ratio of the two variants' step times
in the same round.

Variants (batch B, image size S, patch P, width D, depth, MLP width from the chosen size):

    livt            LiVTForImageClassification (mean pooling + fc_norm, Bal-BCE loss)
    timm_vit        timm VisionTransformer, identical dimensions and head (global_pool="avg", fc_norm), same loss
    hf_vit          transformers ViTForImageClassification (CLS head), identical dimensions, same loss on its logits
    deit_lt         DeiTLTForImageClassification, DeiT-LT loss on both heads against fixed teacher labels (no teacher)
    timm_deit       timm VisionTransformerDistilled (distilled training: two heads), same loss
    deit_lt_teacher DeiT-LT step + the teacher's forward (eval mode, no grad) on the same batch, resized to the
                    teacher's input size: ResNetCifar-32 at 32 px (the DeiT-LT CIFAR teacher; `--teacher resnet_cifar`)
    deit_lt_teacher_r50  the same with a ResNet-50 (transformers ResNetForImageClassification, the ImageNet-LT
                    teacher) at the student's input size (`--teacher resnet50`, or `both`, the default)
    mgp             LiVTForMaskedImageModeling (MAE: encoder on the 25% visible patches, light decoder)
    mgp_mask_token  the same encoder and decoder with the mask tokens kept in the encoder (all 1 + L tokens, the
                    masked ones replaced by a learned mask token), what MAE's token dropping saves
    matmul          (CPU) an N x N fp32 matmul: the same-process FLOP/s peak the training FLOP/s are compared with

Definitions (printed with the results):

    X_vs_Y                       = throughput(X) / throughput(Y) = step_time(Y) / step_time(X)  (higher = X faster)
    mgp_over_supervised          = step_time(mgp) / step_time(livt)    vs mgp_flop_ratio = FLOPs(mgp) / FLOPs(sup.)
    mgp_over_mask_token_encoder  = step_time(mgp) / step_time(mgp_mask_token) vs mask_token_flop_ratio (same order)
    teacher_overhead             = step_time(deit_lt_teacher) / step_time(deit_lt)  (lower is better)
    FLOP/s                       = analytic training FLOPs per image (bench/flops.py, 3 x forward) x images/s

    python bench/speed.py --quick --json                      # CPU, ViT-Ti/16 224, 1 thread, < 5 min on 2 cores
    python bench/speed.py --quick --threads 0 --json          # the same on all cores
    python bench/speed.py                                     # ViT-B/16 224 (the paper size)
    python bench/speed.py --device cuda --dtype bf16 --peak_tflops 989   # + model FLOPs utilisation (H100 SXM bf16)
    python bench/speed.py --quick --profile livt,timm_vit     # torch.profiler tables of one step each
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

# Denormals: set before anything starts the OpenMP pool, so that every intra-op thread inherits FTZ/DAZ.
# (`torch.set_flush_denormal` only sets the calling thread's MXCSR; worker threads copy it when they are created.)
_FLUSH = os.environ.get("BENCH_FLUSH_DENORMAL", "1") != "0"
torch.set_flush_denormal(_FLUSH)


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import flops as flop_counter  # noqa: E402
from speed_variants import ALL_VARIANTS, SIZES, Variant, build_variants  # noqa: E402

DEFINITIONS = {
    "X_vs_Y": "throughput(X) / throughput(Y) = median over rounds of step_time(Y) / step_time(X); higher = X faster",
    "mgp_over_supervised": "step_time(mgp) / step_time(livt supervised step, same encoder), median over rounds; "
                           "compare with mgp_flop_ratio = train FLOPs(mgp) / train FLOPs(supervised)",
    "mgp_over_mask_token_encoder": "step_time(mgp) / step_time(mgp with mask tokens kept in the encoder); compare "
                                   "with mask_token_flop_ratio = FLOPs(mgp) / FLOPs(mask-token mgp)",
    "ratio_error": "measured time ratio / analytic FLOP ratio - 1 (goal: |error| <= 0.15)",
    "teacher_overhead": "step_time(deit_lt + teacher forward) / step_time(deit_lt without teacher); lower is better",
    "train_flops": "analytic matmul FLOPs (bench/flops.py) x 3 (forward + backward) per image x images/s",
    "cpu_fraction_of_matmul_peak": "train FLOP/s / FLOP/s of an N x N fp32 matmul timed in the same rounds",
    "mfu": "train FLOP/s / (--peak_tflops x 1e12)",
    "ratio_of_minima": "the same ratios from each variant's fastest step (robust to other processes' load, which only "
                       "ever slows a step down); goals are judged on the medians",
}


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_rounds(variants: dict[str, Variant], args, device, log) -> None:
    names = list(variants)
    for name in names:
        for _ in range(args.warmup):
            variants[name].step()
        synchronize(device)
    log(f"warm-up done ({args.warmup} steps each)")
    for round_index in range(args.repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            variant = variants[name]
            synchronize(device)
            start = time.perf_counter()
            for _ in range(args.steps):
                variant.step()
            synchronize(device)
            variant.times.append((time.perf_counter() - start) / args.steps)
        log(f"round {round_index + 1}/{args.repeats}: " + ", ".join(
            f"{n} {variants[n].times[-1]:.3f}s" for n in names))


def median_ratio(numerator: Variant, denominator: Variant) -> float:
    return statistics.median(a / b for a, b in zip(numerator.times, denominator.times))


def denormal_check(args, device, log) -> dict:
    """The livt and mgp steps with flush-denormal off vs on, interleaved, on ONE thread (the flag is per thread: a
    single thread is the only way to toggle it exactly inside one process) and on flat, digit-like images (a constant
    background with a small random blob), where denormals come from."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sub = argparse.Namespace(**{**vars(args), "variants": ["livt", "mgp"], "batch_size": args.denormal_batch_size})
    flat = torch.full((sub.batch_size, 3, args.image_size, args.image_size), -0.4242)
    s = args.image_size // 4
    flat[:, :, s:2 * s, s:2 * s] = torch.rand(sub.batch_size, 3, s, s) * 2.8 - 0.42
    results = {}
    try:
        variants = build_variants(sub, device, pixels=flat)
        times = {(name, flag): [] for name in variants for flag in (False, True)}
        for variant in variants.values():
            for flag in (False, True):
                torch.set_flush_denormal(flag)
                variant.step()
        for _ in range(args.denormal_repeats):
            for name, variant in variants.items():
                for flag in (False, True):
                    torch.set_flush_denormal(flag)
                    start = time.perf_counter()
                    variant.step()
                    times[(name, flag)].append(time.perf_counter() - start)
        for name in variants:
            off, on = times[(name, False)], times[(name, True)]
            results[name] = {
                "step_time_flush_off_s": statistics.median(off), "step_time_flush_on_s": statistics.median(on),
                "slowdown_without_flush": statistics.median(a / b for a, b in zip(off, on)),
            }
            log(f"denormals {name}: flush off {results[name]['step_time_flush_off_s']:.3f}s, "
                f"on {results[name]['step_time_flush_on_s']:.3f}s")
    finally:
        torch.set_flush_denormal(_FLUSH)
        torch.set_num_threads(threads)
    return {"threads": 1, "batch_size": sub.batch_size, "input": "flat digit-like images", **results}


def profile_variants(variants: dict[str, Variant], names, args, out_dir: Path | None, log) -> dict:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    tables = {}
    for name in names:
        variant = variants[name]
        variant.step()
        with profile(activities=activities, record_shapes=False) as prof:
            for _ in range(2):
                variant.step()
        key = "self_device_time_total" if args.device == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=key, row_limit=args.profile_rows)
        tables[name] = table
        log(f"--- profile: {name} (2 steps) ---\n{table}")
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / f"profile_{name}_{args.size}_{args.device}_{args.dtype}.txt").write_text(table)
    return tables


# ---------------------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------------------
def machine_info(device) -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Core(s) per socket", "Thread(s) per core", "Socket(s)"):
                info[key.strip()] = value.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    for module in ("timm", "transformers"):
        try:
            info[module] = __import__(module).__version__
        except ImportError:
            pass
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def summarize(variants, args, dims, device, extra) -> dict:
    result = {
        "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "flush_denormal": _FLUSH,
        "model_dims": asdict(dims),
        "definitions": DEFINITIONS,
    }
    models = {n: v for n, v in variants.items() if n != "matmul"}
    result["variants"] = {
        n: {"description": v.description, "step_time_s": statistics.median(v.times),
            "images_per_s": v.images_per_step / statistics.median(v.times),
            "train_gflops_per_image": v.train_flops_per_image / 1e9,
            "train_tflops_per_s": v.train_flops_per_image * v.images_per_step / statistics.median(v.times) / 1e12,
            "step_times_s": v.times,
            **({"teacher_forward_gflops_per_image": v.teacher_forward_flops / 1e9}
               if hasattr(v, "teacher_forward_flops") else {})}
        for n, v in models.items()
    }

    def ratio(a, b):  # throughput(a) / throughput(b)
        return median_ratio(variants[b], variants[a]) if a in variants and b in variants else None

    summary = flop_counter.summary(dims)
    result["livt_vs_timm"] = ratio("livt", "timm_vit")
    result["livt_vs_hf_vit"] = ratio("livt", "hf_vit")
    result["deit_lt_vs_timm"] = ratio("deit_lt", "timm_deit")
    if "mgp" in variants and "livt" in variants:
        result["mgp_over_supervised"] = median_ratio(variants["mgp"], variants["livt"])
    result["mgp_flop_ratio"] = summary["mgp_flop_ratio"]
    if "mgp" in variants and "mgp_mask_token" in variants:
        result["mgp_over_mask_token_encoder"] = median_ratio(variants["mgp"], variants["mgp_mask_token"])
    result["mask_token_flop_ratio"] = summary["mask_token_flop_ratio"]
    for key, flop_key in (("mgp_over_supervised", "mgp_flop_ratio"),
                          ("mgp_over_mask_token_encoder", "mask_token_flop_ratio")):
        if result.get(key) is not None:
            result[key + "_error"] = result[key] / result[flop_key] - 1
    for name, key in (("deit_lt_teacher", "teacher_overhead"), ("deit_lt_teacher_r50", "teacher_overhead_resnet50")):
        if name in variants and "deit_lt" in variants:
            result[key] = median_ratio(variants[name], variants["deit_lt"])
            flops_ratio = variants[name].train_flops_per_image / variants["deit_lt"].train_flops_per_image
            result[key + "_flop_ratio"] = flops_ratio
    # contention-robust check: ratio of the fastest step of each variant (interference only ever slows a step down)
    pairs = {"livt_vs_timm": ("timm_vit", "livt"), "livt_vs_hf_vit": ("hf_vit", "livt"),
             "deit_lt_vs_timm": ("timm_deit", "deit_lt"), "mgp_over_supervised": ("mgp", "livt"),
             "mgp_over_mask_token_encoder": ("mgp", "mgp_mask_token"),
             "teacher_overhead": ("deit_lt_teacher", "deit_lt"),
             "teacher_overhead_resnet50": ("deit_lt_teacher_r50", "deit_lt")}
    result["ratio_of_minima"] = {key: min(variants[a].times) / min(variants[b].times)
                                 for key, (a, b) in pairs.items() if a in variants and b in variants}
    result["teacher"] = {"deit_lt_teacher": "ResNetCifar-32 at 32 px" if args.teacher in ("resnet_cifar", "both")
                         else "ResNet-50 at the student's size",
                         "deit_lt_teacher_r50": "ResNet-50 at the student's size" if args.teacher == "both" else None}
    if "matmul" in variants:
        mm = variants["matmul"]
        peak_times = mm.times
        result["matmul_peak_tflops"] = mm.flops_per_step / statistics.median(peak_times) / 1e12
        result["fraction_of_matmul_peak"] = {
            n: statistics.median(
                (v.train_flops_per_image * v.images_per_step / t) / (mm.flops_per_step / p)
                for t, p in zip(v.times, peak_times))
            for n, v in models.items()
        }
        if device.type == "cpu":
            result["cpu_training_flops_vs_matmul_peak"] = result["fraction_of_matmul_peak"].get("livt")
    if args.peak_tflops:
        result["mfu"] = {n: r["train_tflops_per_s"] / args.peak_tflops for n, r in result["variants"].items()}
    result.update(extra)
    result["goals"] = goals(result, device)
    return result


def goals(result, device) -> dict:
    out = {}

    def add(name, value, target, ok):
        if value is not None:
            out[name] = {"value": round(value, 4), "target": target, "met": bool(ok(value))}

    add("livt_vs_timm", result.get("livt_vs_timm"), ">= 1.0", lambda v: v >= 1.0)
    add("deit_lt_vs_timm", result.get("deit_lt_vs_timm"), ">= 1.0", lambda v: v >= 1.0)
    add("mgp_over_supervised_error", result.get("mgp_over_supervised_error"), "|e| <= 0.15", lambda v: abs(v) <= 0.15)
    add("mgp_over_mask_token_encoder_error", result.get("mgp_over_mask_token_encoder_error"), "|e| <= 0.15",
        lambda v: abs(v) <= 0.15)
    add("teacher_overhead", result.get("teacher_overhead"), "<= 1.25", lambda v: v <= 1.25)
    if device.type == "cpu":
        add("cpu_training_flops_vs_matmul_peak", result.get("cpu_training_flops_vs_matmul_peak"), ">= 0.55",
            lambda v: v >= 0.55)
    if "mfu" in result:
        add("mfu_livt", result["mfu"].get("livt"), ">= 0.40", lambda v: v >= 0.40)
    return out


def markdown(result) -> str:
    lines = [f"command: `{result['command']}`  ", f"date: {result['date']}  ",
             f"machine: {result['machine'].get('Model name', '?')}, {result['machine'].get('CPU(s)', '?')} CPUs, "
             f"torch {result['machine']['torch']}, {result['machine']['threads']} threads, "
             f"device {result['settings']['device']}, dtype {result['settings']['dtype']}, "
             f"flush_denormal {result['flush_denormal']}  ",
             f"model: {result['settings']['size']} (D={result['model_dims']['hidden_size']}, "
             f"depth {result['model_dims']['num_hidden_layers']}), {result['settings']['image_size']} px, patch "
             f"{result['settings']['patch_size']}, batch {result['settings']['batch_size']}, "
             f"{result['settings']['repeats']} rounds x {result['settings']['steps']} steps", "",
             "| variant | step (s) | images/s | train GFLOPs/img | TFLOP/s | of matmul peak |",
             "|---|---|---|---|---|---|"]
    fractions = result.get("fraction_of_matmul_peak", {})
    for name, v in result["variants"].items():
        frac = fractions.get(name)
        lines.append(f"| {name} | {v['step_time_s']:.3f} | {v['images_per_s']:.2f} | {v['train_gflops_per_image']:.2f} "
                     f"| {v['train_tflops_per_s']:.3f} | {'-' if frac is None else f'{100 * frac:.0f}%'} |")
    lines += ["", "| metric | median of per-round ratios | ratio of minima | analytic (FLOPs) | goal | met |",
              "|---|---|---|---|---|---|"]
    minima = result.get("ratio_of_minima", {})

    def fmt(v):
        return "-" if v is None else f"{v:.3f}"

    rows = [("livt_vs_timm", None), ("livt_vs_hf_vit", None), ("deit_lt_vs_timm", None),
            ("mgp_over_supervised", "mgp_flop_ratio"), ("mgp_over_mask_token_encoder", "mask_token_flop_ratio"),
            ("teacher_overhead", "teacher_overhead_flop_ratio"),
            ("teacher_overhead_resnet50", "teacher_overhead_resnet50_flop_ratio"),
            ("cpu_training_flops_vs_matmul_peak", None), ("matmul_peak_tflops", None)]
    goal_keys = {"mgp_over_supervised": "mgp_over_supervised_error",
                 "mgp_over_mask_token_encoder": "mgp_over_mask_token_encoder_error"}
    for key, flop_key in rows:
        if result.get(key) is None:
            continue
        goal = result["goals"].get(goal_keys.get(key, key))
        lines.append(f"| {key} | {fmt(result[key])} | {fmt(minima.get(key))} | "
                     f"{fmt(result.get(flop_key)) if flop_key else '-'} | "
                     f"{goal['target'] if goal else '-'} | {('yes' if goal['met'] else 'NO') if goal else '-'} |")
    if "mfu" in result:
        lines += ["", "MFU: " + ", ".join(f"{n} {100 * v:.1f}%" for n, v in result["mfu"].items())]
    if "denormal" in result:
        d = result["denormal"]
        lines += ["", f"denormals ({d['input']}, {d['threads']} thread, batch {d['batch_size']}): " + "; ".join(
            f"{n} flush off / on = {v['slowdown_without_flush']:.2f}x" for n, v in d.items() if isinstance(v, dict))]
    lines += ["", "Definitions:"] + [f"- `{k}`: {v}" for k, v in result["definitions"].items()]
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="ViT-Ti/16 224, batch 8, 1 thread (CPU), 7 rounds: < 5 min on 2 CPUs.")
    parser.add_argument("--json", action="store_true", help="Print one JSON object as the last stdout line.")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"],
                        help="fp32, or autocast to bf16/fp16 (weights and optimizer in fp32, as Trainer --bf16).")
    parser.add_argument("--size", default=None, choices=sorted(SIZES), help="Encoder size (default base; quick tiny).")
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--patch_size", type=int, default=16)
    parser.add_argument("--num_labels", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=None,
                        help="Default: quick 8, CPU 8, CUDA 128 (ViT-B bf16 fits in 80 GB with all variants).")
    parser.add_argument("--mask_ratio", type=float, default=0.75)
    parser.add_argument("--drop_path", type=float, default=0.0,
                        help="Stochastic depth of our models and timm's (HF ViT has none): 0 keeps them identical.")
    parser.add_argument("--attn_implementation", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--optimizer", default="adamw", choices=["adamw", "adamw_fused", "sgd", "none"],
                        help="adamw: torch.optim.AdamW defaults, as our trainers; adamw_fused: fused=True.")
    parser.add_argument("--teacher", default=None, choices=["resnet_cifar", "resnet50", "both"],
                        help="Teacher variants (default: quick resnet_cifar, else both).")
    parser.add_argument("--variants", default=",".join(ALL_VARIANTS), help="Comma-separated subset of variants.")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="Rounds (default 7).")
    parser.add_argument("--steps", type=int, default=None, help="Steps per variant per round (default 1; CUDA 10).")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads; 0 = torch's default (all cores). Default: 1 for --quick on CPU "
                        "(stable on a shared machine: a 2-thread team stalls whenever another job takes a core), "
                        "else all cores.")
    parser.add_argument("--matmul_size", type=int, default=None, help="Default: CPU 2048, CUDA 8192.")
    parser.add_argument("--matmul_reps", type=int, default=None, help="Matmuls per timing (default CPU 2, CUDA 20).")
    parser.add_argument("--peak_tflops", type=float, default=None,
                        help="Peak of the device in the dtype (e.g. H100 SXM dense bf16 989) for MFU.")
    parser.add_argument("--denormal_check", type=int, default=None, choices=[0, 1],
                        help="Also time livt / mgp with flush-denormal off vs on (1 thread). Default: on for CPU.")
    parser.add_argument("--denormal_batch_size", type=int, default=4)
    parser.add_argument("--denormal_repeats", type=int, default=3)
    parser.add_argument("--profile", default=None, help="Comma-separated variants to profile (torch.profiler).")
    parser.add_argument("--profile_rows", type=int, default=25)
    parser.add_argument("--output_dir", default=None, help="Write speed_<tag>.json / .md (and profiles) here.")
    parser.add_argument("--tag", default=None, help="File name tag (default: quick / full + device + dtype).")
    args = parser.parse_args(argv)
    args.size = args.size or ("tiny" if args.quick else "base")
    args.teacher = args.teacher or ("resnet_cifar" if args.quick else "both")
    cuda = args.device == "cuda"
    if args.threads is None:
        args.threads = 1 if args.quick and not cuda else 0
    args.batch_size = args.batch_size or (8 if args.quick or not cuda else 128)
    args.repeats = args.repeats or 7
    args.steps = args.steps or (10 if cuda else 1)
    args.matmul_reps = args.matmul_reps or (20 if cuda else 2)
    args.matmul_size = args.matmul_size or (8192 if cuda else 2048)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(ALL_VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(ALL_VARIANTS)}")
    if args.denormal_check is None:
        args.denormal_check = int(args.device == "cpu" and args.dtype == "fp32")
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda but no GPU is visible")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 runs use TF32 tensor cores, as Trainer --tf32
        torch.backends.cudnn.allow_tf32 = True
    log_stream = sys.stderr if args.json else sys.stdout

    def log(message):
        print(message, file=log_stream, flush=True)

    start = time.perf_counter()
    torch.manual_seed(0)
    size = SIZES[args.size]
    dims = flop_counter.ViTDims(image_size=args.image_size, patch_size=args.patch_size, num_labels=args.num_labels,
                                mask_ratio=args.mask_ratio, **{k: v for k, v in size.items() if "heads" not in k})
    log(f"building {len(args.variants)} variants: size {args.size}, {args.image_size} px, batch {args.batch_size}, "
        f"{args.device} {args.dtype}, {torch.get_num_threads()} threads, flush_denormal={_FLUSH}")
    variants = build_variants(args, device)
    out_dir = Path(args.output_dir) if args.output_dir else None
    extra = {}
    if args.profile:
        profile_variants(variants, [p for p in args.profile.split(",") if p], args, out_dir, log)
    run_rounds(variants, args, device, log)
    if args.denormal_check:
        extra["denormal"] = denormal_check(args, device, log)
    extra["wall_time_s"] = time.perf_counter() - start
    result = summarize(variants, args, dims, device, extra)
    text = markdown(result)
    log(text)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        tag = args.tag or f"{'quick' if args.quick else 'full'}_{args.device}_{args.dtype}_{torch.get_num_threads()}t"
        (out_dir / f"speed_{tag}.json").write_text(json.dumps(result, indent=2))
        (out_dir / f"speed_{tag}.md").write_text(f"# Training-step throughput ({tag})\n\n" + text)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
