"""Render the README's inference speed table from `bench/inference.py --json PATH` output.

    .venv/bin/python bench/inference.py --memory --bf16 --compile --json speed.json
    .venv/bin/python bench/speed_table.py speed.json      # markdown on stdout, pasted into README.md

One table row per measured variant (images/s or image-prompt pairs/s, ms each, peak memory when
measured), then the ratios and the output differences as bullets.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def render(result: dict) -> str:
    s = result["setup"]
    has_peaks = any(row["peak_mib"] is not None for row in result["rows"])
    head = f"what (`{s['command'].strip()}`, {s['date']})"
    lines = [
        f"{s['trunk']} at {s['size']} px, batch {s['batch']}, {s['device']}/{s['dtype']}, {s['threads']} threads, "
        f"{s['text_tokens']} text tokens, cross mode {s['cross_chunk_pairs']} pairs per pass, "
        f"median of {s['rounds']} rounds:",
        "",
        f"| {head} | per second | ms each |" + (" peak above model |" if has_peaks else ""),
        "| --- | --- | --- |" + (" --- |" if has_peaks else ""),
    ]
    for row in result["rows"]:
        unit = "images" if row["unit"] == "img" else "pairs"
        cells = [row["label"], f"{row['per_s']:.2f} {unit}", f"{row['ms_per']:.1f}"]
        if has_peaks:
            cells.append("" if row["peak_mib"] is None else f"{row['peak_mib']:.0f} MiB")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for ratio in result["ratios"]:
        target = "" if ratio["target"] is None else f" (target ≥ {ratio['target']:g})"
        lines.append(f"- {ratio['label']} = **{ratio['value']:.3f}**{target}")
    for name, c in result["checks"].items():
        lines.append(f"- output difference, {name.replace('_', ' ')}: global features max abs {c['max_abs']:.3g} "
                     f"(values up to {c['reference_max_abs']:.3g}), lowest cosine {c['min_cosine']:.6f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, help="the file bench/inference.py --json wrote")
    text = render(json.loads(parser.parse_args(argv).json.read_text()))
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
