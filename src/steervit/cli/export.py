"""`steervit export --model NAME (--prompt P | --text-input) OUT.onnx [--check]`."""
from __future__ import annotations

import argparse
import sys

from .options import EXIT_ERROR, add_model_options, model_from_args, positive_int

# Prompts of different lengths for checking an export that takes the text as an input.
CHECK_PROMPTS = ("a dog", "the small red car parked on the left side of the street")
# Outputs judged against --tolerance. Logits are unbounded scores whose float error grows with their
# size; they are printed, and their softmax (heatmap_probs) is what the check holds to the tolerance.
CHECKED_OUTPUTS = ("global_features", "patch_features", "heatmap_probs")


def register(commands) -> None:
    p = commands.add_parser("export", help="export the image side (prompt baked in or as an input) to ONNX")
    p.add_argument("out", metavar="OUT.onnx", help="the ONNX file to write")
    text = p.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", metavar="P", help="bake this prompt into the graph (inputs: images only)")
    text.add_argument("--text-input", action="store_true",
                      help="take the text embedding as inputs text_tokens (T, L, D) and text_mask (T, L), "
                           "T = 1 or the batch; make them with encode_text / save_text_embedding")
    p.add_argument("--image-size", type=positive_int, metavar="PX",
                   help="square input size, a multiple of the patch size (default: the model's)")
    p.add_argument("--opset", type=positive_int, default=18,
                   help="ONNX opset, 18 to the newest the installed torch exports (23 for torch 2.14; default: 18)")
    p.add_argument("--check", action="store_true",
                   help="run the file with onnxruntime and compare with PyTorch; exit 2 above --tolerance")
    p.add_argument("--check-images", nargs="+", metavar="IMAGE",
                   help="images for --check (default: 3 random ones, checked as batches of 1 and 3)")
    p.add_argument("--tolerance", type=float, default=1e-4,
                   help="max abs difference allowed by --check on features and probabilities (default: 1e-4)")
    add_model_options(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    import torch

    from ..export import check_onnx, check_opset, check_out_path, export_onnx
    from ..io import open_rgb
    from ..text import check_prompt_list

    # everything that can be checked is checked before the slow model load
    check_out_path(args.out)
    check_opset(args.opset)
    if args.prompt is not None:
        check_prompt_list([args.prompt])
    if args.check_images and not args.check:
        raise ValueError("--check-images are the images for --check; add --check (or drop --check-images)")
    # The check's inputs: all of them or none (a check on fewer images than asked would pass silently).
    pictures = [open_rgb(p) for p in args.check_images or []]
    model = model_from_args(args)
    path = export_onnx(model, args.out, prompt=args.prompt, text_as_input=args.text_input,
                       opset=args.opset, image_size=args.image_size)
    print(path)
    if not args.check:
        return 0

    size = args.image_size or model.image_size
    if pictures:
        transform = model.get_transforms(size)
        images = torch.stack([transform(picture) for picture in pictures])
    else:
        images = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    failed = False
    for batch in dict.fromkeys((1, len(images))):  # dynamic batch: one image, then all
        x = images[:batch]
        if args.text_input:
            prompts = [CHECK_PROMPTS[i % len(CHECK_PROMPTS)] for i in range(batch)]
            text = prompts if batch > 1 else prompts[:1]
        else:
            text = args.prompt
        diffs = check_onnx(model, path, x, text)
        for name, diff in diffs.items():
            bad = name in CHECKED_OUTPUTS and not diff <= args.tolerance
            failed |= bad
            print(f"batch {batch} {name}: max abs diff {diff:.3g}" + ("  ABOVE TOLERANCE" if bad else ""))
    if failed:
        print(f"steervit: error: onnxruntime and PyTorch differ by more than {args.tolerance:g}", file=sys.stderr)
        return EXIT_ERROR
    print(f"check passed (tolerance {args.tolerance:g})")
    return 0
