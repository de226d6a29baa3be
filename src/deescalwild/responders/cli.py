"""`deescalwild responders list`: every backend, its options and what it needs."""

from __future__ import annotations

import json

import click


@click.group("responders")
def responders() -> None:
    """The backends that can play the civilian (spec strings for --responder)."""


@responders.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def list_cmd(as_json: bool) -> None:
    """Each backend with its options (pass them as SPEC?key=value&key=value)."""
    from deescalwild.responders.registry import describe_backends

    info = describe_backends()
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for b in info:
        if not b["available"]:
            from rich.markup import escape

            console.print(f"[bold]{b['name']}[/] [yellow](not installed)[/] {escape(b['why'])}",
                          highlight=False)
            continue
        extra = []
        if b["needs_key"]:
            extra.append(f"key from ${b['needs_key']}")
        if b["can_stream"]:
            extra.append("streams")
        console.print(f"[bold]{b['name']}[/]  {b['description']}"
                      + (f"  [dim]({', '.join(extra)})[/]" if extra else ""), highlight=False)
        if b["options"]:
            t = Table(show_header=True, box=None, padding=(0, 2))
            for col in ("option", "type", "default", "description"):
                t.add_column(col)
            for o in b["options"]:
                t.add_row(o["name"], o["type"], repr(o["default"]), o["description"])
            console.print(t)
