"""The built-in local runner: a diffusers pipeline from a local folder, served to the jobs
routed to it (``imagegate worker --local MODEL_DIR``; the extra ``imagegate[local]``).

Nothing here imports PyTorch or diffusers until a pipeline is loaded, so the gateway runs
without the extra.
"""

from imagegate.local.provider import LocalProvider

__all__ = ["LocalProvider"]
