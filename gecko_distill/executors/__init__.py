"""Where the LLM stages run.

``executor = "local"`` (the default) runs every shard in this process. ``executor = "ray"`` sends the
shards' LLM calls to a Ray Data actor pool (:class:`~gecko_distill.executors.ray_executor.RayExecutor`);
the shard plan, the shard files and the final dataset are the same either way. Ray is an optional extra
(``pip install 'gecko-distill[ray]'``), imported only when the Ray executor is used.
"""

from __future__ import annotations

__all__: list[str] = []
