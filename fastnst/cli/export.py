"""Command line: ``python -m fastnst.export`` writes a style model as ONNX and checks it (fastnst.infer.backends.onnx)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fastnst.atomic import unwritable_reason
from fastnst.infer.backends.onnx import DEFAULT_OPSET, VERIFY_SIZES, export_onnx, verify_onnx
from fastnst.nets.modelfile import ModelFileError, load_style_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastnst.export", description="Export a style model to ONNX (dynamic H and W).")
    p.add_argument("--model", "-m", required=True, help="shipped model name, a .safetensors model file, or a training checkpoint (.pt)")
    p.add_argument("-o", "--output", metavar="OUT", help="output .onnx file (required)")
    p.add_argument("--onnx", dest="onnx_output", metavar="OUT", help=argparse.SUPPRESS)  # the old spelling of -o
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (refused otherwise)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check against PyTorch")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed |ONNX - PyTorch| (default 1e-3)")
    args = p.parse_args(argv)
    if args.output and args.onnx_output and args.output != args.onnx_output:
        p.error("give the output once (-o OUT)")
    output = args.output or args.onnx_output
    if not output:
        p.error("the following arguments are required: -o/--output")
    if Path(output).is_dir() or output.endswith(("/", os.sep)):
        # A directory gets <model>.onnx inside it (a shipped name or the model file's stem), as -o DIR
        # does in the stylize command; it is not the file to replace.
        output = str(Path(output) / f"{Path(args.model).stem}.onnx")
    if Path(output).is_dir():
        print(f"error: {output} is a directory", file=sys.stderr)
        return 1
    if Path(output).exists() and not args.overwrite:
        print(f"error: {output} exists (use --overwrite to replace it)", file=sys.stderr)
        return 1
    reason = unwritable_reason(Path(output).parent)
    if reason is not None:
        print(f"error: -o {output}: {reason}", file=sys.stderr)
        return 1
    try:
        model = load_style_model(args.model, "cpu")
    except ModelFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        out = export_onnx(model, output, args.opset)
    except Exception as exc:  # noqa: BLE001 - exporter failures come in many types; report them on one line
        print(f"error: export to {output} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, style {model.style}, dynamic batch/height/width)")
    if args.no_verify:
        return 0
    try:
        err = verify_onnx(out, model.net)
    except ImportError:
        print("warning: onnxruntime is not installed; not verified (pip install onnxruntime)", file=sys.stderr)
        return 0
    sizes = ", ".join(f"{h}x{w}" for h, w in VERIFY_SIZES)
    if err > args.tolerance:
        print(f"error: ONNX Runtime output differs from PyTorch by up to {err:.2e} (> {args.tolerance:g}) at {sizes}", file=sys.stderr)
        return 1
    print(f"verified with ONNX Runtime at {sizes}: max |onnx - torch| = {err:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
