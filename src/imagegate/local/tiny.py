"""A tiny Stable Diffusion pipeline with random weights, built in code and saved to a
folder: for trying the local runner, its tests and benchmarks without downloading weights.
Its images are noise, of the asked size and format.

    python -m imagegate.local.tiny FOLDER
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"


def _tokenizer_files(folder: Path) -> tuple[Path, Path]:
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for char in _CHARS:
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(f"{char}</w>", len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return folder / "vocab.json", folder / "merges.txt"


def build_tiny_pipeline(folder: Path, seed: int = 0) -> Path:
    """Save a tiny random-weight ``StableDiffusionPipeline`` to ``folder``; returns it."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            pad_token_id=1,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=128,
            max_position_embeddings=77,
        )
    )
    with tempfile.TemporaryDirectory() as words:
        vocab, merges = _tokenizer_files(Path(words))
        tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(str(folder))
    return folder


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m imagegate.local.tiny FOLDER")
    print(build_tiny_pipeline(Path(sys.argv[1])))
