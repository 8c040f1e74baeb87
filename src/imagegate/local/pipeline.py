"""A diffusers pipeline loaded from a folder (never downloaded), on the best device here."""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imagegate.errors import ImagegateError

log = logging.getLogger("imagegate.local")

INSTALL_HINT = "pip install 'imagegate[local]' (diffusers and PyTorch)"


class LocalRunnerError(ImagegateError):
    """The local runner cannot start: the extra is missing or the folder holds no pipeline."""

    status_code = 500
    code = "local_runner_unavailable"


def pick_device(asked: str | None = None) -> str:
    """``asked``, else the first of cuda, mps and cpu that this machine has."""
    import torch

    if asked and asked != "auto":
        return asked
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def describe_device(device: str) -> str:
    """The device in words, e.g. ``cuda (NVIDIA H100 80GB HBM3)`` or ``cpu (16 threads)``."""
    import torch

    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    if device == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return device


@dataclass(frozen=True, slots=True)
class Shape:
    """What must be equal for requests to run in one batch."""

    width: int
    height: int
    steps: int | None
    guidance: float | None
    negative_prompt: str | None


class LocalPipeline:
    """One pipeline on one device; :meth:`run` makes a batch of images (blocking)."""

    def __init__(self, model_dir: Path, *, device: str | None = None, dtype: str | None = None):
        try:
            import torch
            from diffusers import DiffusionPipeline
            from diffusers.utils import logging as diffusers_logging
        except ImportError as exc:
            raise LocalRunnerError(f"The local runner needs {INSTALL_HINT}: {exc}") from None
        if not (Path(model_dir) / "model_index.json").is_file():
            raise LocalRunnerError(
                f"{model_dir} is not a diffusers pipeline folder (no model_index.json); "
                "save one with pipeline.save_pretrained(folder)."
            )
        diffusers_logging.disable_progress_bar()
        self.device = pick_device(device)
        torch_dtype = getattr(torch, dtype) if dtype else None
        if torch_dtype is None and self.device.startswith("cuda"):
            torch_dtype = torch.float16
        self.dtype = str(torch_dtype or torch.float32).removeprefix("torch.")
        pipe: Any = DiffusionPipeline.from_pretrained(
            str(model_dir), local_files_only=True, torch_dtype=torch_dtype
        )
        pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.name = type(pipe).__name__
        self._accepts = set(inspect.signature(pipe.__call__).parameters)
        log.info(
            "local runner: %s from %s on %s (%s)",
            self.name,
            model_dir,
            describe_device(self.device),
            self.dtype,
        )

    @property
    def device_description(self) -> str:
        return describe_device(self.device)

    def run(self, shape: Shape, prompts: list[str], seeds: list[int | None]) -> list[Any]:
        """One pass of the pipeline over ``prompts``: PIL images, one per prompt."""
        import torch

        kwargs: dict[str, Any] = {"prompt": prompts, "width": shape.width, "height": shape.height}
        if shape.steps is not None:
            kwargs["num_inference_steps"] = shape.steps
        if shape.guidance is not None:
            kwargs["guidance_scale"] = shape.guidance
        if shape.negative_prompt is not None and "negative_prompt" in self._accepts:
            kwargs["negative_prompt"] = [shape.negative_prompt] * len(prompts)
        if "generator" in self._accepts:
            generator_device = "cpu" if self.device == "mps" else self.device
            kwargs["generator"] = [
                torch.Generator(generator_device).manual_seed(
                    seed if seed is not None else int(torch.seed() % (2**63))
                )
                for seed in seeds
            ]
        kwargs = {k: v for k, v in kwargs.items() if k in self._accepts or k == "prompt"}
        with torch.inference_mode():
            output = self.pipe(**kwargs, output_type="pil")
        return list(output.images)
